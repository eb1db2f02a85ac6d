"""The pieces of the HTML report: escaped tables, inline PNG figures, the
sections' markup, the CSS and the CLAIM / TRIPOD+AI checklist.

Everything here takes plain values (dicts, `Evaluation`, arrays) and returns
strings; `covidxray.report` gathers the values. Every string that comes from
data (file, class and source names) goes through `esc`. See
`docs/guides/report.md`.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CSS",
    "checklist",
    "esc",
    "figure_uri",
    "page",
    "png_uri",
    "table",
]

CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
line-height:1.45;color:#1d1d1f;background:#fff}
.banner{background:#8b0000;color:#fff;padding:.6rem 1rem;font-weight:600}
main{max-width:1100px;margin:0 auto;padding:0 1rem 3rem}
h1{font-size:1.6rem;margin:1rem 0 .3rem}
h2{font-size:1.3rem;margin-top:2rem;border-bottom:2px solid #ddd;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.4rem}
h4{font-size:.95rem;margin:.8rem 0 .4rem}
p,li{overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%;margin:.5rem 0}
table{border-collapse:collapse;font-size:.88rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto}
.row{display:flex;flex-wrap:wrap;gap:0 2rem;align-items:flex-start}
.row>div{max-width:100%;min-width:0}
.row h3{margin-top:.5rem}
.figs{display:flex;flex-wrap:wrap;gap:1rem}
.figs figure{margin:0;flex:1 1 300px;max-width:520px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));
gap:.6rem}
.gallery figure{margin:0}
.gallery img{width:100%;image-rendering:auto;border:1px solid #ccc}
figcaption{font-size:.78rem;overflow-wrap:anywhere;color:#444}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:.5rem;
font-size:.8rem}
.warn{background:#fff4e5;border-left:4px solid #e65100;padding:.4rem 1rem;
margin:.6rem 0}
.warn li{margin:.2rem 0}
.ok{color:#1b5e20}.no{color:#8b0000}.part{color:#8a5a00}
.muted{color:#555;font-size:.85rem}
"""


def esc(value: Any) -> str:
    """`value` as text safe inside HTML elements and quoted attributes.

    Examples:
        >>> esc('<img src=x onerror="a()">')
        '&lt;img src=x onerror=&quot;a()&quot;&gt;'
    """
    return html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return '<td class="num">n/a</td>'
        return f'<td class="num">{value:.3f}</td>'
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'<td class="num">{int(value)}</td>'
    return f"<td>{esc(value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An escaped HTML table in a box that scrolls sideways if it must.

    Examples:
        >>> table(["a"], [["<b>", 2]])
        '<div class="scroll"><table>...<td>&lt;b&gt;</td><td class="num">2</td>...'
    """
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def png_uri(data: bytes) -> str:
    """A `data:image/png;base64,...` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig: Any, dpi: int = 90) -> str:
    """A matplotlib figure as an inline PNG URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return png_uri(buffer.getvalue())


def image_uri(image: Any, size: int = 160) -> str:
    """A PIL image, scaled to `size` pixels on its longer side, as a PNG URI."""
    from PIL import Image

    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    buffer = io.BytesIO()
    image.resize(shape, Image.Resampling.BILINEAR).save(buffer, format="PNG")
    return png_uri(buffer.getvalue())


def _captioned(items: Sequence[tuple[str, str]], layout: str) -> str:
    """Captioned images, (data URI, caption) each, in a `layout` block."""
    parts = [
        f'<figure><img src="{uri}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        for uri, caption in items
    ]
    return f'<div class="{layout}">' + "".join(parts) + "</div>"


def figures(items: Sequence[tuple[str, str]]) -> str:
    """Figures side by side (one column on a phone): (data URI, caption) each."""
    return _captioned(items, "figs")


def gallery(items: Sequence[tuple[str, str]]) -> str:
    """Thumbnails in a grid: (data URI, caption) each."""
    return _captioned(items, "gallery")


def warnings_box(lines: Sequence[str]) -> str:
    """The warnings of a section, in plain words."""
    if not lines:
        return '<p class="ok">No warnings.</p>'
    items = "".join(f"<li>{esc(line)}</li>" for line in lines)
    return f'<div class="warn"><strong>Warnings</strong><ul>{items}</ul></div>'


def page(title: str, body: str) -> str:
    """The whole document: one file, inline CSS, no script, no external link."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        '<div class="banner" role="note">Research software, not for clinical use. '
        "These numbers describe a model on the data below; they are not a "
        "diagnosis.</div>"
        f"<main>{body}</main></body></html>\n"
    )


#: (item, covered?, where or why) per checklist topic. Topics are named, not
#: numbered: CLAIM 2020 and its 2024 update number them differently.
_STATIC: tuple[tuple[str, str, str], ...] = (
    (
        "Data sources (CLAIM: data; TRIPOD+AI: source of data)",
        "partly",
        "Source names and folders of every dataset scored, and of the training "
        "data from the model's training record. Sites, dates and acquisition "
        "devices are not known to covidxray.",
    ),
    (
        "Eligibility criteria, inclusion and exclusion of participants",
        "no",
        "The report sees only the images it was given, not how patients were chosen.",
    ),
    (
        "Data preprocessing steps",
        "yes",
        "The model's Preprocessing (size, colour mode, resize, window, trim, "
        "equalisation, lungs), applied alike to every image scored.",
    ),
    (
        "Partitions: how the data were split, and leakage between them",
        "yes",
        "Training record: counts per split and the split seed; images of a "
        "scored set seen in training (same bytes or decoded pixels) are left "
        "out and counted, near-duplicates flagged.",
    ),
    (
        "Reference standard (ground truth): definition, annotators, quality control",
        "no",
        "Labels are the datasets' own folder names or metadata findings; how "
        "they were established is not recorded.",
    ),
    (
        "Patient demographics and clinical characteristics per partition",
        "no",
        "Age, sex, severity and clinical setting were not given to covidxray.",
    ),
    (
        "Participant flow, numbers excluded",
        "partly",
        "Images read, left out as seen in training, and left out of the lung "
        "test; no patient-level flow diagram.",
    ),
    (
        "Sample size: how it was determined",
        "no",
        "The report states the sample sizes and their intervals, not why they "
        "were chosen.",
    ),
    (
        "Model: architecture, parameters, software versions",
        "yes",
        "Model section: layers, parameter counts, the versions of covidxray, "
        "TensorFlow and Keras that saved it.",
    ),
    (
        "Training details: hyperparameters, epochs, augmentation, selection of "
        "the final model",
        "partly",
        "Learning rate, seed, spectral decoupling and lung focus are in the "
        "model file; epochs, augmentation and the loss history are not.",
    ),
    (
        "Operating point (threshold) fixed in advance",
        "yes",
        "Every metric is at the model's stored threshold; how it was chosen is "
        "said in the model section as far as the file records it.",
    ),
    (
        "Performance metrics with statistical uncertainty",
        "yes",
        "Wilson intervals for proportions, seeded bootstrap intervals for the "
        "AUCs and the ECE.",
    ),
    (
        "Calibration",
        "yes",
        "ECE over equal-count bins with a bootstrap interval, and the "
        "reliability diagram, per dataset.",
    ),
    (
        "Failure analysis",
        "yes",
        "The most confident false positives and false negatives, with their "
        "Grad-CAM overlays.",
    ),
    (
        "Explainability (saliency), with its limits",
        "partly",
        "Grad-CAM on the failures, and the share of saliency inside the lungs "
        "in the lung test; Grad-CAM shows where gradients are large, not why.",
    ),
    (
        "Subgroup performance and fairness (sex, age, device)",
        "no",
        "No subgroup attributes were given; per-source results need "
        "covidxray.evaluate_by_source.",
    ),
    (
        "Comparison with clinicians, intended use and clinical role",
        "no",
        "Outside what software can report.",
    ),
    (
        "Ethics approval, registration, protocol, funding, conflicts of interest",
        "no",
        "Outside what software can report.",
    ),
    (
        "Code and data availability",
        "partly",
        "covidxray is open source and its version is stated; whether the data "
        "may be shared is not known to it.",
    ),
)


def checklist(external: Sequence[str], within: Sequence[str], lung_tests: int) -> str:
    """The checklist section's table: what this report covers and what not.

    Args:
        external: Names of the datasets scored that share no source with the
            training data.
        within: Names of those that share a source with it.
        lung_tests: How many datasets got a lung test.
    """
    rows = [list(row) for row in _STATIC]
    if external:
        rows.append(
            [
                "External validation",
                "yes",
                f"Scored on data from sources the model was not trained on: "
                f"{', '.join(external)}.",
            ]
        )
    else:
        rows.append(
            [
                "External validation",
                "no",
                "Every dataset scored shares a source with the training data (or "
                "the model has no training record): no external result here.",
            ]
        )
    if within:
        rows.append(
            [
                "Internal (within-source) validation",
                "yes",
                f"Held-out data of the training sources: {', '.join(within)}.",
            ]
        )
    rows.append(
        [
            "Robustness and shortcut tests",
            "partly" if lung_tests else "no",
            (
                f"The lung test on {lung_tests} dataset(s): the same images "
                "with the lungs removed, only the lungs, and a control. "
                if lung_tests
                else "No lung test was run. "
            )
            + "The shortcut audit (covidxray audit) is not part of this report.",
        ]
    )
    marks = {"yes": "covered", "partly": "partly", "no": "not covered"}
    css = {"yes": "ok", "partly": "part", "no": "no"}
    body = "".join(
        f"<tr><td>{esc(item)}</td><td class='{css[state]}'>{marks[state]}</td>"
        f"<td>{esc(why)}</td></tr>"
        for item, state, why in rows
    )
    covered = sum(r[1] == "yes" for r in rows)
    return (
        f"<p>{covered} of {len(rows)} reporting topics that CLAIM 2024 and "
        "TRIPOD+AI ask about are covered here, others in part or not at all. "
        "Topics are paraphrased and grouped; check the checklists' own wording "
        "before citing them.</p>"
        '<div class="scroll"><table><thead><tr><th>topic</th><th>this report'
        f"</th><th>where, or why not</th></tr></thead><tbody>{body}</tbody>"
        "</table></div>"
    )


def metric_rows(ev: Mapping[str, Any]) -> list[list[Any]]:
    """Rows (metric, value, 95% CI, how) of an `Evaluation.to_dict()`."""
    how = {
        "roc_auc": "bootstrap",
        "pr_auc": "bootstrap",
        "ece": "bootstrap",
        "accuracy": "Wilson",
        "sensitivity": "Wilson",
        "specificity": "Wilson",
        "ppv": "Wilson",
        "npv": "Wilson",
    }
    rows: list[list[Any]] = []
    for key, value in ev["metrics"].items():
        if key in ev["unavailable"]:
            rows.append([key, "n/a", "", ev["unavailable"][key]])
            continue
        lo, hi = ev["ci95"].get(key, (None, None))
        interval = "" if lo is None or hi is None else f"{lo:.3f} - {hi:.3f}"
        shown = math.nan if value is None else float(value)
        rows.append([key, shown, interval, how.get(key, "") if interval else ""])
    return rows
