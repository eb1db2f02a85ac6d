"""The lung test: does a model need the lungs at all?

The same images are scored four ways: as they are; with everything outside
the lungs filled (`lungs_only`); with the lungs filled (`lungs_removed`); and
a control with a region of the same area filled just outside the lungs
(`control`). The fill is the image's median outside the lungs. A model that
still ranks COVID-19 images high with no lung pixel left learned something
other than the lungs. An image with a region blanked is out of distribution
for any model, which is why the control is there: a drop that the control
shows too comes from removing a large region, not from removing the lungs.

See `docs/guides/lungs.md`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "VARIANTS",
    "LungTest",
    "blank",
    "control_region",
    "lung_table",
    "reading",
    "run_lung_test",
    "saliency_in_lungs",
]

#: The four ways the lung test scores the same images, in report order.
VARIANTS = ("as_is", "lungs_only", "lungs_removed", "control")
#: A `lungs_removed` ROC AUC above this says the model does not need the lungs.
NEEDS_NO_LUNGS_AUC = 0.7


def control_region(mask: np.ndarray) -> np.ndarray:
    """A region outside the lungs with the lungs' area: the pixels nearest to
    the lungs, so that the control removes as much of the chest as the lungs
    cover, next to them, and no lung pixel.

    Examples:
        >>> import numpy as np
        >>> m = np.zeros((10, 10), bool); m[3:7, 3:7] = True
        >>> c = control_region(m)
        >>> int(c.sum()), bool((c & m).any())
        (16, False)
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    k = int(mask.sum())
    outside = np.flatnonzero(~mask.ravel())
    if k == 0 or outside.size == 0:
        return np.zeros_like(mask)
    distance = ndimage.distance_transform_edt(~mask).ravel()[outside]
    chosen = outside[np.argsort(distance, kind="stable")[:k]]
    region = np.zeros(mask.size, bool)
    region[chosen] = True
    return region.reshape(mask.shape)


def blank(images: np.ndarray, masks: Sequence[np.ndarray], variant: str) -> np.ndarray:
    """`images` (N, H, W, C) with one region of each filled with that image's
    median outside its lungs (per channel).

    Args:
        images: Model inputs, float in [0, 1] or uint8.
        masks: One boolean (H, W) lung mask per image.
        variant: One of `VARIANTS`: `"as_is"` changes nothing, `"lungs_only"`
            fills everything outside the lungs, `"lungs_removed"` fills the
            lungs, `"control"` fills `control_region(mask)`.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 16
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> y = blank(x, [m], "lungs_removed")
        >>> bool((y[0, 1:3, 1:3, 0] == np.median(x[0][~m])).all())
        True
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"The `variant` argument of blank must be one of {', '.join(VARIANTS)}. "
            f"Received: {variant!r}."
        )
    out = np.array(images, copy=True)
    if variant == "as_is":
        return out
    for i, mask in enumerate(masks):
        mask = np.asarray(mask, bool)
        outside = out[i][~mask] if (~mask).any() else out[i].reshape(-1, out.shape[-1])
        fill = np.median(outside, axis=0).astype(out.dtype)
        region = {
            "lungs_only": ~mask,
            "lungs_removed": mask,
            "control": control_region(mask),
        }[variant]
        out[i][region] = fill
    return out


def saliency_in_lungs(heatmaps: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """Each heatmap's share of its mass inside its lung mask (NaN for an
    all-zero heatmap).

    Examples:
        >>> import numpy as np
        >>> h = np.zeros((1, 4, 4)); h[0, 0, 0] = 1; h[0, 2, 2] = 3
        >>> m = np.zeros((4, 4), bool); m[2:, 2:] = True
        >>> saliency_in_lungs(h, [m]).tolist()
        [0.75]
    """
    shares = []
    for heat, mask in zip(heatmaps, masks, strict=True):
        total = float(np.sum(heat))
        inside = float(np.sum(np.asarray(heat)[np.asarray(mask, bool)]))
        shares.append(inside / total if total > 0 else float("nan"))
    return np.array(shares, dtype=float)


def reading(aucs: Mapping[str, float | None], saliency: float, area: float) -> str:
    """What the lung test says, in plain words.

    Examples:
        >>> print(reading({"as_is": 0.99, "lungs_only": 0.7,
        ...                "lungs_removed": 0.83, "control": 0.97}, 0.3, 0.3))
        ... # doctest: +NORMALIZE_WHITESPACE
        With the lungs removed the model still ranks COVID-19 at ROC AUC 0.83:
        it does not need the lungs. ...
    """

    def fmt(v: float | None) -> str:
        return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"

    removed, control = aucs.get("lungs_removed"), aucs.get("control")
    as_is, only = aucs.get("as_is"), aucs.get("lungs_only")
    if removed is None or not np.isfinite(removed):
        return (
            "The lung test needs both classes among the images scored: ROC AUC "
            "could not be measured."
        )
    has_control = control is not None and bool(np.isfinite(control))
    kept = control is not None and has_control and control >= removed + 0.05
    if removed >= NEEDS_NO_LUNGS_AUC:
        first = (
            f"With the lungs removed the model still ranks COVID-19 at ROC AUC "
            f"{fmt(removed)}: it does not need the lungs."
        )
        if kept:
            first += (
                f" They do carry part of what it uses: removing the same area "
                f"outside the lungs leaves {fmt(control)} (as is: {fmt(as_is)})."
            )
    else:
        fell = as_is is not None and np.isfinite(as_is) and removed < as_is
        first = (
            f"With the lungs removed the model's ROC AUC "
            f"{'falls to' if fell else 'is'} {fmt(removed)} (as is: {fmt(as_is)})."
        )
        if not has_control:
            pass
        elif not kept:
            first += (
                f" Removing the same area just outside the lungs lowers it as much "
                f"(control: {fmt(control)}): the drop comes from blanking a large "
                "region, not from losing the lungs."
            )
        else:
            first += (
                f" The same area removed outside the lungs keeps it at "
                f"{fmt(control)}: the model uses the lungs."
            )
    rest = (
        f" With only the lungs left it scores {fmt(only)}. A median "
        f"{saliency:.0%} of its Grad-CAM mass lies in the lungs, which cover "
        f"{area:.0%} of the image."
        if np.isfinite(saliency)
        else f" With only the lungs left it scores {fmt(only)}."
    )
    return first + rest


@dataclass
class LungTest:
    """The lung test's result: one `Evaluation` per variant, saliency, and a
    reading in words.

    Attributes:
        evaluations: `Evaluation` per variant (`VARIANTS` order).
        saliency_in_lungs: Median share of Grad-CAM mass inside the lungs.
        lung_area: Mean share of the image the lungs cover.
        reading: What it says, in plain words.
        excluded: Files left out because their lung mask was implausible.
        segmenter: The segmenter's version and weights hash.
    """

    evaluations: dict[str, Any]
    saliency_in_lungs: float
    lung_area: float
    reading: str
    excluded: list[str] = field(default_factory=list)
    segmenter: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: per variant its `n`, metrics (`roc_auc`,
        `sensitivity`, ...) and `ci95`, plus `saliency_in_lungs`, `lung_area`,
        `reading`, `excluded` and `segmenter`."""
        out: dict[str, Any] = {}
        for key in VARIANTS:
            full = self.evaluations[key].to_dict()
            out[key] = {"n": full["n"], **full["metrics"], "ci95": full["ci95"]}
        out.update(
            saliency_in_lungs=_finite(self.saliency_in_lungs),
            lung_area=_finite(self.lung_area),
            reading=self.reading,
            excluded=list(self.excluded),
            segmenter=dict(self.segmenter),
        )
        return out

    def to_markdown(self) -> str:
        """A table of the four variants and the reading."""
        lines = [
            "| images | n | ROC AUC (95% CI) | sensitivity | specificity |",
            "|---|---|---|---|---|",
        ]
        shown = {
            "as_is": "as they are",
            "lungs_only": "only the lungs (outside filled)",
            "lungs_removed": "lungs removed (filled)",
            "control": "control: same area removed outside the lungs",
        }
        for key in VARIANTS:
            e = self.evaluations[key]
            auc, ci = e.metrics.get("roc_auc"), e.ci.get("roc_auc")
            cell = "n/a" if auc is None or not np.isfinite(auc) else f"{auc:.3f}"
            if ci and cell != "n/a":
                cell += f" ({ci[0]:.3f}-{ci[1]:.3f})"
            sens, spec = e.metrics.get("sensitivity"), e.metrics.get("specificity")
            lines.append(
                f"| {shown[key]} | {e.meta.get('n', '')} | {cell} | "
                f"{_cell(sens)} | {_cell(spec)} |"
            )
        lines += ["", self.reading]
        if self.excluded:
            lines += [
                "",
                f"{len(self.excluded)} images were left out: their lung masks "
                "were implausible.",
            ]
        return "\n".join(lines)


def lung_table(tests: Mapping[str, Mapping[str, Any]]) -> str:
    """Several models' lung tests (`LungTest.to_dict()` each, or
    `{"error": ...}`) as one Markdown table, with a line saying how to read it.

    Examples:
        >>> print(lung_table({"cnn": {"error": "no plausible lung mask"}}))
        ... # doctest: +ELLIPSIS
        ROC AUC of the same test images ...
        | cnn | no plausible lung mask | | | | | |
    """
    lines = [
        "ROC AUC of the same test images as they are, with only the lungs, "
        "with the lungs removed, and with the same area removed just outside "
        "the lungs (the control); saliency is the median share of Grad-CAM "
        "mass in the lungs. A high 'lungs removed' means the model does not "
        "need the lungs.",
        "",
        "| model | as is | lungs only | lungs removed | control "
        "| saliency in lungs | lung area |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, test in tests.items():
        if "error" in test:
            lines.append(f"| {name} | {test['error']} | | | | | |")
            continue
        aucs = [_cell(test[v]["roc_auc"], 3) for v in VARIANTS]
        shares = [_cell(test[k]) for k in ("saliency_in_lungs", "lung_area")]
        lines.append(f"| {name} | {' | '.join(aucs)} | {' | '.join(shares)} |")
    return "\n".join(lines)


def _cell(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _gray_uint8(images: np.ndarray) -> np.ndarray:
    """Model inputs (N, H, W, C) in [0, 1] as the segmenter takes them."""
    gray = images.mean(axis=-1) if images.shape[-1] > 1 else images[..., 0]
    return np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8)


def run_lung_test(
    chunks: Iterable[tuple[np.ndarray, Sequence[str]]],
    labels: np.ndarray,
    *,
    predict_proba: Callable[[np.ndarray], np.ndarray],
    evaluate: Callable[[np.ndarray, np.ndarray, dict[str, Any]], Any],
    segmenter: Any,
    explain: Callable[[np.ndarray], np.ndarray] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> LungTest:
    """Score the same images four ways (`VARIANTS`) and measure saliency.

    Args:
        chunks: `(images, names)` in the order of `labels`: model inputs
            (N, H, W, C), float in [0, 1], and their file names.
        labels: The model's class index of each image.
        predict_proba: Float images -> class probabilities (N, n_classes).
        evaluate: `(labels, probabilities, meta)` -> an `Evaluation`.
        segmenter: A `LungSegmenter`; each image is segmented as the model
            sees it, so the masks lie on the model's own pixels.
        explain: Float images -> Grad-CAM heatmaps (N, H, W); None skips the
            saliency measure.
        meta: Provenance copied into each evaluation's `meta`.

    Returns:
        A `LungTest`. Images whose mask is implausible are left out of all four
        variants (the segmenter warns with each name) and listed in `excluded`.

    Raises:
        DataError: No image had a plausible lung mask.
    """
    from ..errors import DataError

    probs: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    kept_labels, shares, areas, excluded = [], [], [], []
    start = 0
    for images, names in chunks:
        n = len(images)
        chunk_labels = labels[start : start + n]
        start += n
        try:
            masks = segmenter.predict(list(_gray_uint8(images)), names=list(names))
        except DataError:  # no lung in any image of this chunk: all left out
            excluded += list(names)
            continue
        keep = [i for i, m in enumerate(masks) if m.plausible]
        excluded += [masks[i].name for i in range(n) if not masks[i].plausible]
        if not keep:
            continue
        x = images[keep]
        lungs = [masks[i].mask for i in keep]
        for variant in VARIANTS:
            probs[variant].append(predict_proba(blank(x, lungs, variant)))
        kept_labels.append(chunk_labels[keep])
        areas += [float(m.mean()) for m in lungs]
        if explain is not None:
            shares += saliency_in_lungs(explain(x), lungs).tolist()
    if not kept_labels:
        raise DataError(
            f"The lung test found no plausible lung mask in any of the "
            f"{len(excluded)} images; it cannot blank what it cannot find."
        )
    y = np.concatenate(kept_labels)
    info = dict(meta or {})
    info.update(
        n_lung_test=int(len(y)),
        n_excluded=len(excluded),
        segmenter=segmenter.info(),
    )
    evaluations = {
        v: evaluate(y, np.concatenate(probs[v]), {**info, "variant": v, "n": len(y)})
        for v in VARIANTS
    }
    saliency = float(np.nanmedian(shares)) if shares else float("nan")
    area = float(np.mean(areas))
    aucs = {v: evaluations[v].metrics.get("roc_auc") for v in VARIANTS}
    return LungTest(
        evaluations=evaluations,
        saliency_in_lungs=saliency,
        lung_area=area,
        reading=reading(aucs, saliency, area),
        excluded=excluded,
        segmenter=segmenter.info(),
    )
