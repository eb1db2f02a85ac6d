"""The sections of the HTML report, from plain values: `Section` (what one
dataset's section shows), the glance table, the model, its training record,
and each dataset's section. `covidxray.report` fills them; the markup
primitives are in `_report_html`. See `docs/guides/report.md`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _report_html as H

if TYPE_CHECKING:
    from .metrics import Evaluation

__all__ = [
    "Section",
    "contents",
    "dataset_section",
    "glance",
    "model_section",
    "training_section",
]


@dataclass
class Section:
    """What one dataset's section shows, as plain values."""

    name: str
    summary: str = ""
    source_table: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    n_total: int = 0
    n_seen: int | None = None
    seen_whole: bool = False
    evaluation: Evaluation | None = None
    lungs: Any = None
    lung_note: str = ""
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    failure_note: str = ""
    warnings: list[str] = field(default_factory=list)


def glance(
    sections: Sequence[Section], *, binary: bool = True, known: bool = True
) -> str:
    """One row per dataset: images scored and the headline metrics with CIs.

    `binary`: the model has two classes (a threshold); `known`: it has a
    training record (images seen in training were left out)."""
    keys = ("roc_auc", "sensitivity", "specificity", "ece")

    def cell(ev: Evaluation, key: str) -> str:
        if key in ev.unavailable or key not in ev.metrics:
            return "n/a"
        value, ci = ev.metrics[key], ev.ci.get(key)
        return f"{value:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    rows = []
    for s in sections:
        ev = s.evaluation
        if ev is None:
            rows.append([s.name, 0, *["seen whole: not scored"] * len(keys)])
        else:
            rows.append([s.name, len(ev.y_true), *[cell(ev, k) for k in keys]])
    return (
        "<h2>At a glance</h2>"
        + H.table(
            ["dataset", "images", "ROC AUC", "sensitivity", "specificity", "ECE"], rows
        )
        + '<p class="muted">Values with their 95% intervals, '
        + (
            "at the model's threshold"
            if binary
            else "each image called its class of highest probability"
        )
        + (
            ", on the images the model never saw.</p>"
            if known
            else ", on every image: the model has no training record, so images "
            "it saw in training could not be left out.</p>"
        )
    )


def contents(sections: Sequence[Section]) -> str:
    links = "".join(
        f'<li><a href="#data-{i}">{H.esc(s.name)}</a></li>'
        for i, s in enumerate(sections)
    )
    return (
        '<nav><ul><li><a href="#model">The model</a></li>'
        '<li><a href="#training">What it was trained on</a></li>'
        f'{links}<li><a href="#checklist">Reporting checklist</a></li></ul></nav>'
    )


def model_section(model: Any, config: Any) -> str:
    binary = len(config.class_names) == 2
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    rows = [
        ["name", model.name],
        ["input shape", str(tuple(model.input_shape[1:]))],
        ["parameters", f"{total:,} ({trainable:,} trainable)"],
        ["classes", ", ".join(config.class_names)],
        *(
            [["positive class", config.positive_class or config.class_names[-1]]]
            if binary
            else []
        ),
        ["learning rate", config.learning_rate],
        ["seed", config.seed],
        ["spectral decoupling", config.spectral_decoupling],
        ["lung focus", config.lung_focus],
    ]
    rows += [[k, v] for k, v in dict(config.provenance).items()]
    if config.checkpoint:
        rows.append(
            ["checkpoint", ", ".join(f"{k} {v}" for k, v in config.checkpoint.items())]
        )
    layers = [
        [layer.name, type(layer).__name__, int(layer.count_params())]
        for layer in model.layers[:40]
    ]
    prep = config.preprocessing.to_dict()
    threshold = config.threshold
    if not binary:
        rule = (
            "<p>Each image is called the class of highest probability (no "
            "threshold: more than two classes).</p>"
        )
    how = (
        "the default 0.5: it was not tuned, so it is fixed in advance but not "
        "chosen for any target"
        if threshold == 0.5
        else "set after training (Classifier.tune_threshold on validation data, "
        "or by hand); the model file does not record how, so state it yourself"
    )
    more = f" ({len(model.layers) - 40} more)" if len(model.layers) > 40 else ""
    return (
        '<h2 id="model">The model</h2><div class="row"><div>'
        + H.table(["property", "value"], [[k, str(v)] for k, v in rows])
        + f"</div><div><h3>Layers{H.esc(more)}</h3>"
        + H.table(["layer", "kind", "parameters"], layers)
        + "</div><div><h3>Preprocessing</h3>"
        + H.table(["step", "value"], [[k, str(v)] for k, v in prep.items()])
        + "</div></div><h3>Threshold</h3>"
        + (
            f"<p>P({H.esc(config.positive_class or config.class_names[-1])}) &ge; "
            f"<strong>{threshold:.4g}</strong> is called positive: {H.esc(how)}. "
            "Every metric below is at this threshold.</p>"
            if binary
            else rule
        )
    )


def training_section(training: Mapping[str, Any] | None) -> str:
    head = '<h2 id="training">What it was trained on</h2>'
    if not training:
        return head + H.warnings_box(
            [
                "This model has no training record (saved by an older covidxray "
                "or fitted on arrays): the report cannot say what it was trained "
                "on, nor check whether a dataset overlaps its training data."
            ]
        )
    parts = [head]
    for entry in training.get("datasets", []):
        sources = ", ".join(
            f"{s.get('name')} ({s.get('path')})" for s in entry.get("sources", [])
        )
        parts.append(
            f"<p><strong>{H.esc(entry.get('source', ''))}</strong>: layout "
            f"{H.esc(entry.get('layout', ''))}; sources {H.esc(sources)}; split "
            f"seed {H.esc(entry.get('seed'))}; modalities "
            f"{H.esc(entry.get('modalities', {}))}.</p>"
        )
        counts = entry.get("counts", {})
        classes = sorted({c for per in counts.values() for c in per})
        rows = [
            [split, *[per.get(c, 0) for c in classes], sum(per.values())]
            for split, per in counts.items()
        ]
        parts.append(H.table(["split", *classes, "all"], rows))
    parts.append(
        f'<p class="muted">The record holds a content hash of each of its '
        f"{H.esc(training.get('images', '?'))} training and validation images "
        "(not the images); that is how images seen in training are found below."
        + (
            ""
            if training.get("complete", True)
            else " It is incomplete: the model also saw arrays, which leave no record."
        )
        + "</p>"
    )
    return "".join(parts)


def dataset_section(s: Section, index: int, shared: list[str], known: bool) -> str:
    from .plots import plot_calibration, plot_roc

    kind = (
        "within-source: it shares the sources "
        + ", ".join(sorted(shared))
        + " with the training data"
        if shared
        else "external: none of its sources is among the training data's"
        if known
        else "of unknown relation to the training data (no training record)"
    )
    parts = [
        f'<h2 id="data-{index}">Dataset: {H.esc(s.name)}</h2>',
        f"<p>This dataset is {H.esc(kind)}.</p>",
        "<h3>Classes by source (all splits read)</h3>",
    ]
    classes = sorted({c for per in s.source_table.values() for c in per})
    parts.append(
        H.table(
            ["source", *classes, "all"],
            [
                [src, *[per.get(c, 0) for c in classes], sum(per.values())]
                for src, per in s.source_table.items()
            ],
        )
    )
    seen = (
        "unknown (the model has no training record)"
        if s.n_seen is None
        else f"{s.n_seen} of {s.n_total}"
    )
    parts.append(
        f"<p>Images to score: {s.n_total}; left out as seen in training or "
        f"validation: <strong>{H.esc(seen)}</strong>.</p>"
    )
    if s.seen_whole:
        parts.append(
            H.warnings_box(
                [
                    f"Every one of the {s.n_total} images of this dataset was seen "
                    "in training or validation (the same file bytes or decoded "
                    "pixels): there is nothing left to score, and no metric is "
                    "reported for it. Score images the model never saw.",
                    *s.warnings,
                ]
            )
        )
        return "".join(parts)
    ev = s.evaluation
    assert ev is not None
    doc = ev.to_dict()
    names = list(ev.class_names)
    rule = (
        f"at the threshold {ev.threshold:.4g}"
        if len(names) == 2
        else "with each image called its class of highest probability"
    )
    parts.append(f"<h3>Metrics {rule} ({doc['n']} images)</h3>")
    parts.append(
        '<div class="row"><div>'
        + H.table(["metric", "value", "95% CI", "interval"], H.metric_rows(doc))
        + "</div><div><p class='muted'>Confusion matrix: rows are true classes, "
        "columns predicted.</p>"
        + H.table(
            ["true \\ predicted", *names],
            [[n, *row] for n, row in zip(names, doc["confusion_matrix"], strict=True)],
        )
        + "</div></div>"
    )
    figs = []
    if len(names) == 2 and "roc_auc" not in ev.unavailable:
        figs.append((H.figure_uri(plot_roc({s.name[-40:]: ev})), "ROC curve"))
    figs.append(
        (
            H.figure_uri(plot_calibration(ev)),
            f"Reliability diagram: ECE {ev.metrics['ece']:.3f}",
        )
    )
    parts.append("<h3>ROC and calibration</h3>" + H.figures(figs))
    if ev.reliability is not None:
        r = ev.reliability
        parts.append(
            f"<p>Expected calibration error (ECE) over {len(r.count)} equal-count "
            f"bins of the {H.esc(r.kind)} probability: <strong>"
            f"{ev.metrics['ece']:.3f}</strong>"
            + (
                f" (95% CI {ev.ci['ece'][0]:.3f} - {ev.ci['ece'][1]:.3f})"
                if "ece" in ev.ci
                else ""
            )
            + ". A calibrated model's points lie on the diagonal. "
            + (
                "Below it, the model gives a higher probability than the "
                "fraction that is positive (it over-predicts the positive "
                "class); above it, a lower one. "
                if r.kind == "positive class"
                else "Below it, the model is more confident than it is right. "
            )
            + "The binned ECE is biased upward on small samples.</p>"
        )
        parts.append(
            H.table(
                ["bin", "images", "mean predicted", "observed"],
                [
                    [i + 1, c, p, o]
                    for i, (p, o, c) in enumerate(
                        zip(r.mean_predicted, r.observed, r.count, strict=True)
                    )
                ],
            )
        )
    parts.append("<h3>The lung test</h3>")
    if s.lungs is not None:
        lt = s.lungs.to_dict()
        shown = {
            "as_is": "as they are",
            "lungs_only": "only the lungs (outside filled)",
            "lungs_removed": "lungs removed (filled)",
            "control": "control: same area removed outside the lungs",
        }
        rows = []
        for key, label in shown.items():
            v = lt[key]
            auc, ci = v.get("roc_auc"), v["ci95"].get("roc_auc")
            rows.append(
                [
                    label,
                    v["n"],
                    _num(auc),
                    "" if not ci or ci[0] is None else f"{ci[0]:.3f} - {ci[1]:.3f}",
                    _num(v.get("sensitivity")),
                    _num(v.get("specificity")),
                ]
            )
        parts.append(
            H.table(
                ["images", "n", "ROC AUC", "95% CI", "sensitivity", "specificity"],
                rows,
            )
            + f"<p>{H.esc(lt['reading'])}</p>"
        )
    else:
        parts.append(f"<p>{H.esc(s.lung_note or 'Not run.')}</p>")
    parts.append("<h3>The most confident mistakes</h3>")
    parts.append(f"<p>{H.esc(s.failure_note)}</p>")
    for kind, items in s.failures.items():
        parts.append(f"<h4>{H.esc(kind)}</h4>" + H.gallery(items))
    parts.append("<h3>Warnings</h3>" + H.warnings_box(s.warnings))
    parts.append(
        "<details><summary>The dataset as read</summary>"
        f"<pre>{H.esc(s.summary)}</pre></details>"
    )
    return "".join(parts)


def _num(value: Any) -> float:
    """A metric of a JSON dict (None: not measurable) as a float."""
    return float("nan") if value is None else float(value)
