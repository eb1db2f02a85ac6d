"""`report`: one self-contained HTML file that says what a model is worth.

The file holds the model (architecture, parameters, preprocessing, threshold),
what it was trained on (its training record), and for each dataset given:
the class x source table, the images left out as seen in training, the
metrics with 95% intervals at the model's threshold, the ROC curve, the
reliability diagram and ECE, the lung test, the most confident false
positives and false negatives with Grad-CAM overlays, and the warnings in
plain words; then a CLAIM / TRIPOD+AI checklist of what it covers and what it
cannot. Figures are inline PNGs; the file fetches nothing. See
`docs/guides/report.md`.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _report_html as H
from ._report_sections import (
    Section,
    contents,
    dataset_section,
    glance,
    model_section,
    training_section,
)
from .data.dataset import XrayDataset
from .data.tempfiles import (
    check_writable,
    file_mode,
    remove_stale,
    temp_prefix,
    terminate_as_exit,
)
from .errors import AllSeenError, DataError

if TYPE_CHECKING:
    from .classifier import Classifier
    from .metrics import Evaluation

logger = logging.getLogger("covidxray")

__all__ = ["check_report_path", "report"]

#: Thumbnails per kind of failure (false positives, false negatives).
GALLERY = 6


def check_report_path(path: str | os.PathLike[str], where: str = "report") -> Path:
    """Check, before any work, that a file can be written at `path`: its
    folder exists and is writable, and `path` is not a folder.

    Raises:
        ValueError: The message names the path and what is wrong.

    Examples:
        >>> check_report_path("no-such-folder/r.html")
        Traceback (most recent call last):
        ...
        ValueError: Cannot write 'no-such-folder/r.html' (report): the folder ...
    """
    return check_writable(path, where)


@dataclass(frozen=True)
class _Model:
    """What the report asks of a fitted classifier, as bound methods and
    plain values (a private helper never takes the classifier itself)."""

    class_names: tuple[str, ...]
    read: Callable[..., XrayDataset]
    evaluate: Callable[..., Evaluation]
    explain: Callable[..., np.ndarray]
    lung_test: Callable[..., Any]


def report(
    clf: Classifier,
    datasets: Any,
    path: str | os.PathLike[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    lung_test: bool = True,
    gallery: int = GALLERY,
    class_map: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Write one self-contained HTML report of a fitted classifier.

    Args:
        clf: A fitted `Classifier`.
        datasets: A dataset folder or file, an `XrayDataset`, a list of them,
            or a dict of name to either. Each is read as `evaluate` reads it
            (the model's preprocessing; its test split, or all of it).
        path: The HTML file to write, atomically (checked before any work).
        n_bootstrap: Bootstrap resamples of the AUC and ECE intervals.
        seed: Seed of the bootstrap.
        lung_test: Run the lung test (binary models; the shipped segmenter).
        gallery: Most confident false positives and false negatives shown,
            each (0: none).
        class_map: Renames of class folders, as in `Classifier.read_dataset`.
        title: The report's title (default: the model's classes).

    Returns:
        The path written.

    Raises:
        ValueError: `path` cannot be written (before anything is read).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from covidxray import Classifier, build_cnn, load_dataset, report
        >>> from covidxray.datasets import make_synthetic
        >>> root = make_synthetic(tempfile.mkdtemp(), n_per_class=8,
        ...                       test_per_class=4, image_size=(48, 48))
        >>> data = load_dataset(root, image_size=(48, 48), batch_size=8)
        >>> clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
        >>> clf = clf.fit(data, epochs=1, verbose=0)
        >>> out = report(clf, data, Path(tempfile.mkdtemp()) / "r.html",
        ...              n_bootstrap=50, lung_test=False, gallery=2)
        >>> "Research software, not for clinical use" in out.read_text()
        True
    """
    target = check_report_path(path)
    if isinstance(gallery, bool) or not isinstance(gallery, int) or gallery < 0:
        raise ValueError(
            f"The `gallery` argument of report must be an integer >= 0. "
            f"Received: {gallery!r}."
        )
    items = _named(datasets)
    config = clf.get_config()  # raises NotFittedError before any reading
    scorer = _Model(
        class_names=tuple(config.class_names),
        read=clf.read_dataset,
        evaluate=clf.evaluate,
        explain=clf.explain,
        lung_test=clf.lung_test,
    )
    sections = [
        _dataset(scorer, name, data, n_bootstrap, seed, lung_test, gallery, class_map)
        for name, data in items
    ]
    trained = _training_sources(config.training)
    shared = [_shared(s.sources, trained) for s in sections]
    within = [s.name for s, found in zip(sections, shared, strict=True) if found]
    external = [
        s.name
        for s, found in zip(sections, shared, strict=True)
        if trained and not found
    ]
    heading = title or f"covidxray report: {' vs '.join(config.class_names)}"
    body = [
        f"<h1>{H.esc(heading)}</h1>",
        '<p class="muted">One file: every figure is inline and nothing is '
        "fetched. Made by covidxray "
        f"{H.esc(config.provenance.get('covidxray_version', ''))}.</p>",
        contents(sections),
        glance(
            sections,
            binary=len(config.class_names) == 2,
            known=bool(config.training),
        ),
        model_section(clf.model_, config),
        training_section(config.training),
        *(
            dataset_section(s, i, shared[i], bool(trained))
            for i, s in enumerate(sections)
        ),
        '<h2 id="checklist">Reporting checklist</h2>',
        H.checklist(external, within, sum(s.lungs is not None for s in sections)),
    ]
    _write_atomic(target, H.page(heading, "\n".join(body)))
    return target


def _named(datasets: Any) -> list[tuple[str, Any]]:
    if isinstance(datasets, Mapping):
        pairs = [(str(k), v) for k, v in datasets.items()]
    elif isinstance(datasets, (str, os.PathLike, XrayDataset)):
        pairs = [("", datasets)]
    elif isinstance(datasets, Sequence):
        pairs = [("", d) for d in datasets]
    else:
        raise TypeError(
            "The `datasets` argument of report must be a dataset folder or file, "
            "an XrayDataset, a list of them or a dict of name to one. Received: "
            f"{type(datasets).__name__}."
        )
    if not pairs:
        raise ValueError("The `datasets` argument of report is empty.")
    named = []
    for name, data in pairs:
        if not isinstance(data, (str, os.PathLike, XrayDataset)):
            raise TypeError(
                "Each dataset of report must be a folder or file or an "
                f"XrayDataset. Received: {type(data).__name__}."
            )
        if not isinstance(data, XrayDataset) and not Path(data).exists():
            raise DataError(
                f"The dataset '{os.fspath(data)}' of report does not exist."
            )
        shown = name or (
            data.source if isinstance(data, XrayDataset) else os.fspath(data)
        )
        named.append((str(shown), data))
    return named


def _training_sources(training: Mapping[str, Any] | None) -> dict[str, str]:
    """Source name -> folder or file of the training data's sources."""
    found: dict[str, str] = {}
    for entry in (training or {}).get("datasets", []):
        for source in entry.get("sources", []):
            if source.get("name"):
                found[str(source["name"])] = str(source.get("path", ""))
    return found


def _shared(sources: Mapping[str, str], trained: Mapping[str, str]) -> list[str]:
    """The training sources that a dataset's sources are, hold, or lie in
    (`seed-xray/test` lies in the training source `seed-xray`)."""

    def near(a: str, b: str) -> bool:
        if not a or not b:
            return False
        pa, pb = Path(a).resolve(), Path(b).resolve()
        return pa == pb or pb in pa.parents or pa in pb.parents

    return sorted(
        name
        for name, path in trained.items()
        if name in sources or any(near(p, path) for p in sources.values())
    )


def _plain(line: str) -> str:
    """A Markdown line of `Evaluation`'s notes as plain words."""
    line = re.sub(r"\(`[^`]*`\)", "", line)
    return " ".join(line.replace("**", "").replace("`", "").split())


def _dataset(
    scorer: _Model,
    name: str,
    source: Any,
    n_bootstrap: int,
    seed: int,
    lung_test: bool,
    gallery: int,
    class_map: Mapping[str, str] | None,
) -> Section:
    """Read, score and explain one dataset; every warning is kept for the
    report (and logged), and a dataset seen whole is said, not raised."""
    section = Section(name=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = (
            source
            if isinstance(source, XrayDataset)
            else scorer.read(source, class_map)
        )
        section.summary = data.summary()
        section.source_table = data.source_table()
        section.sources = {str(k): str(v) for k, v in data.sources.items()} or {
            str(data.source): str(data.source)
        }
        try:
            ev = scorer.evaluate(data, n_bootstrap=n_bootstrap, seed=seed)
        except AllSeenError as seen:
            section.seen_whole = True
            section.n_total = section.n_seen = seen.n_images
        else:
            section.evaluation = ev
            section.n_seen = ev.meta.get("n_seen")
            section.n_total = int(ev.meta.get("n_total", len(ev.y_true)))
            section.warnings += [
                _plain(line)
                for line in ev.notes
                if line != ev.meta.get("scope") and "Left out" not in line
            ]
            near = [Path(f).name for f in ev.meta.get("near_seen_files", [])]
            if near:
                shown = ", ".join(near[:10]) + (", ..." if len(near) > 10 else "")
                section.warnings.append(
                    f"The images that look like training images: {shown}."
                )
            if gallery:
                _failures(scorer, data, ev, gallery, section)
    section.warnings += _caught(caught)
    if lung_test and section.evaluation is not None:
        _lungs(scorer, data, n_bootstrap, seed, section)
    section.warnings += _sample_warnings(section.evaluation)
    for line in section.warnings:
        logger.warning("%s: %s", name, line)
    return section


def _caught(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    lines = []
    for item in caught:
        text = " ".join(str(item.message).split())
        if text not in lines:
            lines.append(text)
    return lines


def _sample_warnings(ev: Evaluation | None) -> list[str]:
    if ev is None:
        return []
    lines = []
    counts = sorted(ev.support.items(), key=lambda kv: kv[1])
    small = [f"{k} ({v})" for k, v in counts if 0 < v < 30]
    if small:
        lines.append(
            f"Few images of {', '.join(small)}: the intervals of the metrics "
            "that count them are wide; read the intervals, not the values."
        )
    if ev.unavailable:
        reason = next(iter(ev.unavailable.values()))
        lines.append(
            f"Some metrics cannot be measured here ({reason}): "
            f"{', '.join(sorted(ev.unavailable))}."
        )
    return lines


def _failures(
    scorer: _Model,
    data: XrayDataset,
    ev: Evaluation,
    limit: int,
    section: Section,
) -> None:
    """The most confident false positives and false negatives, with Grad-CAM."""
    from .explain import overlay

    records = ev.records
    if len(ev.class_names) != 2 or len(records) != len(ev.y_true):
        section.failure_note = "The gallery needs a binary model."
        return
    pos = list(ev.class_names).index(ev.positive_class or ev.class_names[1])
    p = ev.y_score[:, pos]
    is_pos = ev.y_true == pos
    called = p >= ev.threshold
    fp = [int(i) for i in np.argsort(-p) if not is_pos[i] and called[i]][:limit]
    fn = [int(i) for i in np.argsort(p) if is_pos[i] and not called[i]][:limit]
    chosen = fp + fn
    if not chosen:
        section.failure_note = "No false positives and no false negatives."
        return
    images = data.images_of([records[i] for i in chosen])
    heat = scorer.explain(images)
    names = ev.class_names
    for k, i in enumerate(chosen):
        kind = "False positives" if k < len(fp) else "False negatives"
        caption = (
            f"{Path(records[i].path).name} (true {names[int(ev.y_true[i])]}, "
            f"P({names[pos]}) = {p[i]:.2f})"
        )
        thumb = H.image_uri(overlay(images[k], heat[k]))
        section.failures.setdefault(kind, []).append((thumb, caption))
    section.failure_note = (
        f"{len(fp)} of {int(np.sum(~is_pos & called))} false positives and "
        f"{len(fn)} of {int(np.sum(is_pos & ~called))} false negatives, the most "
        "confident first, with their Grad-CAM overlays (red: where the model's "
        "gradient is largest)."
    )


def _lungs(
    scorer: _Model,
    data: XrayDataset,
    n_bootstrap: int,
    seed: int,
    section: Section,
) -> None:
    if len(scorer.class_names) != 2:
        section.lung_note = "The lung test applies to binary models only."
        return
    try:
        from .lungs import LungSegmenter

        segmenter = LungSegmenter()
    except (ImportError, OSError, DataError) as exc:
        section.lung_note = f"No lung test: the lung segmenter is unavailable ({exc})."
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            section.lungs = scorer.lung_test(
                data, segmenter=segmenter, n_bootstrap=n_bootstrap, seed=seed
            )
        except DataError as exc:
            section.lung_note = f"No lung test: {exc}"
    masks = [w for w in caught if "mask" in str(w.message).lower()]
    if masks:
        section.warnings.append(
            f"The lung segmenter warned about {len(masks)} images (implausible "
            "masks); the lung test left them out."
        )
    section.warnings += _caught([w for w in caught if w not in masks])


def _write_atomic(path: Path, text: str) -> None:
    """Write beside `path` under a temporary name, then rename over it: a
    failure (or SIGTERM) leaves no half-written report."""
    folder = path.parent if str(path.parent) else Path(".")
    suffix = path.suffix or ".html"
    with terminate_as_exit():
        handle, tmp = tempfile.mkstemp(
            prefix=temp_prefix(path.stem), suffix=suffix, dir=folder
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
    remove_stale(folder, path.stem, suffix)
