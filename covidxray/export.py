"""A fitted model that leaves Python: a TensorFlow SavedModel or a TFLite file.

`export_model` writes the Keras model with its preprocessing in the graph, so
that TF Serving, TFLite or any TensorFlow program can run it without
covidxray. A SavedModel has two signatures: `serving_default` takes encoded
PNG or JPEG files (a 1-D `tf.string` tensor) and decodes, windows, converts
and resizes them as the model's `Preprocessing` does (`decode_in_graph`);
`pixels` takes the uint8 `(N, H, W, C)` pixels that `Preprocessing` produces.
Both return `{"probability": P(positive class), "probabilities": every
class}`. A TFLite file holds the `pixels` path. A preprocessing step the graph
cannot do (trim, equalisation, the lungs, a CT slice's body box) is refused
before anything is written (`check_exportable`). See `docs/guides/export.md`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tensorflow as tf

from ._choices import EXPORT_FORMATS
from ._validation import check_choice
from ._version import provenance
from .data.preprocessing import Preprocessing
from .data.tempfiles import (
    check_writable,
    file_mode,
    remove_stale,
    temp_prefix,
    terminate_as_exit,
)

if TYPE_CHECKING:
    import keras

    from ._persist import ModelMetadata

__all__ = [
    "EXPORT_FORMATS",
    "METADATA_NAME",
    "TFLITE_NAME",
    "check_export_path",
    "check_exportable",
    "decode_in_graph",
    "export_model",
]

#: The TFLite file inside a `format="tflite"` export folder.
TFLITE_NAME = "model.tflite"
#: The JSON file beside the model: class names, positive class, threshold,
#: preprocessing, signatures and versions. In a SavedModel it sits in
#: `assets.extra/`, which TF Serving ignores.
METADATA_NAME = "covidxray.json"

_PNG = b"\x89PNG\r\n\x1a\n"
# Pillow's RGB -> L weights (ITU-R 601-2) in 16-bit fixed point, as it rounds.
_L_WEIGHTS = (19595, 38470, 7471)


def check_exportable(
    preprocessing: Preprocessing, modalities: Sequence[str] = ("X-ray",)
) -> None:
    """Refuse a model whose preprocessing the exported graph cannot repeat.

    The graph decodes a file, brings it to 8 bits (`window`: `"auto"`,
    `"percentile"` or fixed), converts its colour and resizes it
    (`"stretch"`, `"pad"`, `"crop"`). It does not search for borders
    (`trim`), equalise (`"histogram"`, `"clahe"`), find the lungs (`lungs`:
    the segmenter is not in the graph) or cut a COVIDx CT slice to its body
    box (read from the split files beside the image, not from the image).

    Raises:
        ValueError: Names every such step and what to do instead.

    Examples:
        >>> from covidxray import Preprocessing
        >>> check_exportable(Preprocessing((64, 64), resize="pad"))
        >>> check_exportable(Preprocessing((64, 64), trim=0.05, equalize="clahe"))
        Traceback (most recent call last):
        ...
        ValueError: Cannot export this model: the exported graph cannot repeat \
trim=0.05 (the border search), equalize='clahe'...
    """
    steps = []
    if preprocessing.trim:
        steps.append(f"trim={preprocessing.trim:g} (the border search)")
    if preprocessing.equalize != "none":
        steps.append(f"equalize={preprocessing.equalize!r}")
    if preprocessing.needs_lungs:
        steps.append(
            f"lungs={preprocessing.lungs!r} (the lung segmenter is not in the graph)"
        )
    if "CT" in tuple(modalities):
        steps.append(
            "a CT slice's body box (it comes from the COVIDx CT split files "
            "beside each slice, not from the image)"
        )
    if steps:
        raise ValueError(
            "Cannot export this model: the exported graph cannot repeat "
            f"{', '.join(steps)}. It decodes, windows, converts the colour and "
            "resizes only, and a model fed pixels without these steps would "
            "silently see other images than it was trained on. Serve this "
            "model with covidxray (Classifier.predict_proba), or train one "
            "without these steps to export it (docs/guides/export.md)."
        )


def export_model(
    config: ModelMetadata,
    model: keras.Model,
    path: str | os.PathLike[str],
    format: str = "savedmodel",
    overwrite: bool = False,
) -> Path:
    """Write a fitted model, its preprocessing in the graph, to a folder.

    `Classifier.export(path, format, overwrite=...)` calls this. The folder is
    written beside `path` under a temporary name and renamed into place, so a
    failed export leaves nothing half-written, and with `overwrite` an earlier
    export stays until the new one is complete.

    Args:
        config: What the classifier file says about the model (its
            `get_config()`): class names, positive class, threshold,
            preprocessing and what it was trained on.
        model: The fitted Keras model.
        path: The folder to write. Its parent must exist and be writable.
        format: `"savedmodel"` (a SavedModel with the `serving_default` and
            `pixels` signatures, plus `assets.extra/covidxray.json`) or
            `"tflite"` (`model.tflite`, the `pixels` path, and
            `covidxray.json`).
        overwrite: Replace an existing non-empty folder.

    Returns:
        The folder written.

    Raises:
        ValueError: `format` is not allowed, the preprocessing cannot be
            exported (`check_exportable`), or `path` exists and is not empty
            (without `overwrite`), is a file, or its parent is missing or
            not writable. All before any work.

    Examples:
        >>> import tempfile
        >>> from covidxray import Classifier, Preprocessing, build_cnn
        >>> from covidxray._persist import ModelMetadata
        >>> config = ModelMetadata(
        ...     class_names=("normal", "covid"), positive_class=None,
        ...     threshold=0.5, preprocessing=Preprocessing((48, 48)))
        >>> clf = Classifier.from_config(config, build_cnn((48, 48, 1)))
        >>> folder = clf.export(f"{tempfile.mkdtemp()}/sm")
        >>> sorted(tf.saved_model.load(str(folder)).signatures)
        ['pixels', 'serving_default']
    """
    check_choice("format", format, EXPORT_FORMATS, "export")
    prep = config.preprocessing
    check_exportable(prep, config.modalities)
    target = check_export_path(path, overwrite)
    names = list(config.class_names)
    positive = _positive_index(names, config.positive_class)
    signatures = ["serving_default", "pixels"] if format == "savedmodel" else []
    binary = positive is not None
    info = {
        "format": "covidxray.export",
        "export_format": format,
        "class_names": names,
        # Two classes: P(positive) against the threshold, as Classifier.predict
        # decides. More: the class of the largest probability (no threshold).
        "positive_class": None if positive is None else names[positive],
        "positive_index": positive,
        "threshold": config.threshold if binary else None,
        "decision": "probability >= threshold" if binary else "argmax probabilities",
        "preprocessing": prep.to_dict(),
        "signatures": signatures or ["pixels"],
        "outputs": ["probability", "probabilities"] if binary else ["probabilities"],
        "provenance": dict(provenance()),
        "classifier": config.to_dict(),
    }
    with terminate_as_exit(), _staged(target, overwrite) as folder:
        archive = _archive(model, prep, positive, files=format == "savedmodel")
        if format == "savedmodel":
            archive.write_out(str(folder), verbose=False)
            extra = folder / "assets.extra"
        else:
            # Through a SavedModel, so that the TFLite signature is "pixels".
            saved = folder / "saved_model"
            archive.write_out(str(saved), verbose=False)
            converter = tf.lite.TFLiteConverter.from_saved_model(
                str(saved), signature_keys=["pixels"]
            )
            (folder / TFLITE_NAME).write_bytes(converter.convert())
            shutil.rmtree(saved)
            extra = folder
        extra.mkdir(exist_ok=True)
        (extra / METADATA_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return target


def _positive_index(names: list[str], positive_class: str | None) -> int | None:
    """The positive class's index of a binary model (1 by default); None for
    more than two classes, which have no positive class."""
    if len(names) != 2:
        return None
    if positive_class is None:
        return 1
    if positive_class not in names:
        raise ValueError(
            f"Cannot export: the model's positive class {positive_class!r} is "
            f"not one of its classes {names}."
        )
    return names.index(positive_class)


def _archive(
    model: keras.Model, prep: Preprocessing, positive: int | None, *, files: bool
) -> Any:
    """The model with its signatures (`pixels`; with `files`, also
    `serving_default`), as a Keras `ExportArchive`. Keras copies the weights
    into the archive's own variables, which the TFLite converter freezes.
    Both return `probabilities` (N, classes), and a binary model's also
    `probability`, P(positive class)."""
    import keras

    def from_pixels(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = model(tf.cast(pixels, tf.float32) / 255.0, training=False)
        out = tf.cast(out, tf.float32)
        if out.shape[-1] == 1:  # one sigmoid unit: P(class 1)
            out = tf.concat([1.0 - out, out], axis=-1)
        if positive is None:
            return {"probabilities": out}
        return {"probability": out[:, positive], "probabilities": out}

    def from_files(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda data: decode_in_graph(data, prep),
            images,
            fn_output_signature=tf.TensorSpec(prep.input_shape, tf.uint8),
        )
        return from_pixels(pixels)

    archive = keras.export.ExportArchive()
    archive.track(model)
    if files:
        archive.add_endpoint(
            "serving_default",
            from_files,
            input_signature=[tf.TensorSpec([None], tf.string, name="images")],
        )
    archive.add_endpoint(
        "pixels",
        from_pixels,
        input_signature=[
            tf.TensorSpec((None, *prep.input_shape), tf.uint8, name="pixels")
        ],
    )
    return archive


def decode_in_graph(data: tf.Tensor, preprocessing: Preprocessing) -> tf.Tensor:
    """One encoded PNG, JPEG, BMP or GIF file (a scalar `tf.string`) to the
    uint8 `(H, W, C)` pixels `preprocessing` reads from it, in TensorFlow ops.

    It follows `Preprocessing.load`: transparency composited on black, a
    16-bit grayscale PNG scaled by its bit depth (its `sBIT` chunk, else the
    smallest of 10, 12, 14 or 16 bits that holds its largest value), the
    `window`, Pillow's RGB-to-gray weights, then the resize policy,
    resampled with Pillow's own arithmetic (its reduction by whole factors and
    fixed-point bilinear weights): the tests find Pillow's pixels exactly,
    a JPEG's within one level (why one level was not traced). It ignores a
    JPEG's EXIF orientation, which Pillow applies.

    Examples:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> from covidxray import Preprocessing
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (40, 20), 200).save(buffer, "PNG")
        >>> prep = Preprocessing((16, 16), color_mode="rgb", resize="pad")
        >>> pixels = decode_in_graph(tf.constant(buffer.getvalue()), prep).numpy()
        >>> pixels.shape, int(pixels[0, 0, 0]), int(pixels[8, 8, 0])
        ((16, 16, 3), 0, 200)
    """
    padded = tf.strings.join([data, b"\0" * 32])  # a short file: no error here
    header = tf.io.decode_raw(tf.strings.substr(padded, 0, 32), tf.uint8)
    deep = tf.reduce_all(
        [
            tf.equal(tf.strings.substr(padded, 0, 8), _PNG),
            tf.equal(header[24], 16),  # bit depth
            tf.equal(header[25], 0),  # colour type: gray, no alpha
        ]
    )
    window = preprocessing.window
    values = tf.cond(
        deep,
        lambda: _deep_gray(data, scale=window == "auto"),
        lambda: _eight_bit(data),
    )
    if window == "percentile":
        values = _percentile_window(values)
    elif isinstance(window, tuple):
        values = _scaled(values, window[0], window[1])
    gray = preprocessing.color_mode == "grayscale"
    values = tf.cond(
        tf.equal(tf.shape(values)[-1], 3),
        lambda: _to_gray(values) if gray else values,
        lambda: values if gray else tf.tile(values, [1, 1, 3]),
    )
    values.set_shape([None, None, preprocessing.channels])
    out = _resized(values, preprocessing.image_size, preprocessing.resize)
    return tf.ensure_shape(out, preprocessing.input_shape)


def _eight_bit(data: tf.Tensor) -> tf.Tensor:
    """An 8-bit file's values, float64 `(h, w, 1 or 3)`, alpha composited on
    black and equal RGB channels made one (as `decode._raw_pixels` does)."""
    image = tf.cond(
        tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff"),
        # Pillow's libjpeg uses the accurate integer DCT; TensorFlow's
        # default is the fast one, a level or two off.
        lambda: tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=0, expand_animations=False),
    )
    values = tf.cast(image, tf.float64)
    channels = tf.shape(values)[-1]
    has_alpha = tf.equal(channels % 2, 0)  # LA or RGBA

    def composited() -> tf.Tensor:
        color, alpha = values[:, :, :-1], values[:, :, -1:]
        return tf.round(color * alpha / 255.0)

    values = tf.cond(has_alpha, composited, lambda: values)
    same = tf.logical_and(
        tf.equal(tf.shape(values)[-1], 3),
        tf.reduce_all(tf.equal(values, values[:, :, :1])),
    )
    return tf.cond(same, lambda: values[:, :, :1], lambda: values)


def _deep_gray(data: tf.Tensor, *, scale: bool) -> tf.Tensor:
    """A 16-bit grayscale PNG's values, float64 `(h, w, 1)`; with `scale`
    (`window="auto"`), brought to 8 bits by its bit depth (`decode.to_uint8`)."""
    values = tf.cast(tf.io.decode_png(data, channels=1, dtype=tf.uint16), tf.float64)
    if not scale:
        return values
    top = tf.reduce_max(values)
    declared = tf.cast(_png_significant_bits(data), tf.float64)
    two = tf.constant(2.0, tf.float64)
    fits = tf.logical_and(top >= 256.0, top < tf.pow(two, declared))
    depths = tf.constant([8.0, 10.0, 12.0, 14.0, 16.0], tf.float64)
    smallest = tf.reduce_min(tf.where(top < tf.pow(two, depths), depths, 99 + depths))
    bits = tf.where(fits, declared, smallest)
    return _scaled(values, 0.0, tf.pow(two, bits) - 1.0)


def _png_significant_bits(data: tf.Tensor) -> tf.Tensor:
    """The largest value of a PNG's sBIT chunk before its image data, else 0
    (`decode._png_significant_bits`)."""
    size = tf.strings.length(data)

    def word(pos: tf.Tensor) -> tf.Tensor:
        raw = tf.cast(
            tf.io.decode_raw(tf.strings.substr(data, pos, 4), tf.uint8), tf.int32
        )
        return raw[0] * 16777216 + raw[1] * 65536 + raw[2] * 256 + raw[3]

    def step(pos: tf.Tensor, found: tf.Tensor, done: tf.Tensor) -> Any:
        length, kind = word(pos), tf.strings.substr(data, pos + 4, 4)
        is_sbit = tf.logical_and(
            tf.equal(kind, b"sBIT"),
            tf.logical_and(length >= 1, length <= 4),
        )
        found = tf.cond(
            is_sbit,
            lambda: tf.reduce_max(
                tf.cast(
                    tf.io.decode_raw(
                        tf.strings.substr(data, pos + 8, length), tf.uint8
                    ),
                    tf.int32,
                )
            ),
            lambda: found,
        )
        stop = tf.reduce_any(
            [is_sbit, tf.equal(kind, b"IDAT"), tf.equal(kind, b"IEND")]
        )
        return pos + 12 + length, found, stop

    _, found, _ = tf.while_loop(
        lambda pos, found, done: tf.logical_and(tf.logical_not(done), pos + 8 <= size),
        step,
        (tf.constant(8), tf.constant(0), tf.constant(False)),
    )
    return found


def _scaled(values: tf.Tensor, low: Any, high: Any) -> tf.Tensor:
    """`low` to 0 and `high` to 255, clipped and rounded (`decode._scale`)."""
    low = tf.cast(low, tf.float64)
    high = tf.cast(high, tf.float64)
    span = tf.where(high > low, high - low, tf.constant(1.0, tf.float64))
    return tf.round(tf.clip_by_value((values - low) / span, 0.0, 1.0) * 255.0)


def _percentile_window(values: tf.Tensor) -> tf.Tensor:
    """`window="percentile"`: the 0.5th and 99.5th percentiles (the value at
    the floored rank, as `decode._percentiles` takes it) to black and white."""
    flat = tf.sort(tf.reshape(values, [-1]))
    last = tf.cast(tf.size(flat) - 1, tf.float64)

    def at(q: float) -> tf.Tensor:
        rank = tf.minimum(tf.floor(q / 100.0 * last), last)
        return flat[tf.cast(rank, tf.int32)]

    low, high = at(0.5), at(99.5)
    return _scaled(values, low, tf.where(high > low, high, low + 1.0))


def _to_gray(values: tf.Tensor) -> tf.Tensor:
    """Pillow's `convert("L")` of RGB values, in its own integer arithmetic."""
    rgb = tf.cast(values, tf.int64)
    weights = tf.constant(_L_WEIGHTS, tf.int64)
    total = tf.reduce_sum(rgb * weights, axis=-1, keepdims=True) + 0x8000
    return tf.cast(tf.bitwise.right_shift(total, 16), tf.float64)


def _resized(values: tf.Tensor, size: tuple[int, int], policy: str) -> tf.Tensor:
    """The resize policy (`preprocessing._resized`) in `_pillow_resize`,
    as uint8."""
    height, width = size
    if policy == "stretch":
        out = _pillow_resize(values, height, width)
    else:
        shape = tf.cast(tf.shape(values)[:2], tf.float64)
        pick = tf.minimum if policy == "pad" else tf.maximum
        scale = pick(width / shape[1], height / shape[0])
        # Python's round() halves to even, as tf.round does.
        new_h = tf.maximum(tf.cast(tf.round(shape[0] * scale), tf.int32), 1)
        new_w = tf.maximum(tf.cast(tf.round(shape[1] * scale), tf.int32), 1)
        scaled = _pillow_resize(values, new_h, new_w)
        if policy == "pad":
            top, left = (height - new_h) // 2, (width - new_w) // 2
            out = tf.pad(
                scaled,
                [[top, height - new_h - top], [left, width - new_w - left], [0, 0]],
            )
        else:
            top, left = (new_h - height) // 2, (new_w - width) // 2
            out = scaled[top : top + height, left : left + width]
    return tf.cast(out, tf.uint8)


def _pillow_resize(values: tf.Tensor, height: Any, width: Any) -> tf.Tensor:
    """Pillow's `resize(..., BILINEAR, reducing_gap=3.0)` of 8-bit values
    (float64 `(h, w, c)`), in its own arithmetic: shrinking by 3 or more, a
    box reduction by whole factors first (`Image.reduce`); then its
    antialiased triangle filter across, rounded to 8 bits, and down."""
    shape = tf.shape(values)
    rows, cols = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    fy = tf.maximum(tf.floor(rows / tf.cast(height, tf.float64) / 3.0), 1.0)
    fx = tf.maximum(tf.floor(cols / tf.cast(width, tf.float64) / 3.0), 1.0)
    values = _box_reduced(values, tf.cast(fy, tf.int32), tf.cast(fx, tf.int32))
    # After reducing, the source is the first rows / fy rows and cols / fx
    # columns of the reduced image (fractional), as Pillow's box then says.
    across = _pillow_weights(width, cols / fx, tf.shape(values)[1])
    values = _fixed_point(tf.einsum("hwc,ow->hoc", values, across))
    down = _pillow_weights(height, rows / fy, tf.shape(values)[0])
    return _fixed_point(tf.einsum("hwc,oh->owc", values, down))


def _pillow_weights(size: tf.Tensor, span: tf.Tensor, inputs: tf.Tensor) -> tf.Tensor:
    """Pillow's bilinear coefficients (`precompute_coeffs`, then 22-bit fixed
    point) from `inputs` samples, of which the first `span` (fractional) map
    onto `size`: a float64 `(size, inputs)` matrix of integers."""
    scale = span / tf.cast(size, tf.float64)
    support = tf.maximum(scale, 1.0)
    center = (tf.range(size, dtype=tf.float64) + 0.5) * scale
    first = tf.maximum(tf.floor(center - support + 0.5), 0.0)[:, None]
    last = tf.minimum(tf.floor(center + support + 0.5), tf.cast(inputs, tf.float64))
    x = tf.range(inputs, dtype=tf.float64)[None, :]
    inside = tf.logical_and(x >= first, x < last[:, None])
    weights = tf.maximum(1.0 - tf.abs((x - center[:, None] + 0.5) / support), 0.0)
    weights = tf.where(inside, weights, tf.zeros_like(weights))
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    weights = weights / tf.where(total > 0, total, tf.ones_like(total))
    return tf.floor(weights * 2.0**22 + 0.5)


def _fixed_point(sums: tf.Tensor) -> tf.Tensor:
    """Pillow's 8-bit result of a 22-bit fixed-point sum: half up, clipped."""
    return tf.clip_by_value(tf.floor((sums + 2.0**21) / 2.0**22), 0.0, 255.0)


def _box_reduced(values: tf.Tensor, fy: tf.Tensor, fx: tf.Tensor) -> tf.Tensor:
    """Pillow's `Image.reduce((fx, fy))`: the mean of each fy x fx block, the
    last ones partial, rounded in its fixed-point arithmetic."""
    shape = tf.shape(values)
    rows = (shape[0] + fy - 1) // fy
    cols = (shape[1] + fx - 1) // fx
    pad = [[0, rows * fy - shape[0]], [0, cols * fx - shape[1]], [0, 0]]

    def block_sums(image: tf.Tensor) -> tf.Tensor:
        padded = tf.pad(image, pad)
        blocks = tf.reshape(padded, [rows, fy, cols, fx, tf.shape(image)[2]])
        return tf.reduce_sum(blocks, axis=[1, 3])

    sums = block_sums(values)
    counts = block_sums(tf.ones_like(values[:, :, :1]))
    multiplier = tf.floor(2.0**24 / counts)
    return tf.floor((sums + tf.floor(counts / 2.0)) * multiplier / 2.0**24)


def check_export_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check, before any work, that an export folder can be written at `path`:
    its parent exists and is writable, and `path` is not a file, nor a
    non-empty folder unless `overwrite`.

    Raises:
        ValueError: The message names `path` and what is wrong.

    Examples:
        >>> check_export_path("no/such/folder/sm", overwrite=False)
        Traceback (most recent call last):
        ...
        ValueError: Cannot write 'no/such/folder/sm' (export): the folder ...
    """
    target = check_writable(path, "export", folder=True)
    here = Path.cwd()
    if target.resolve() == here or target.resolve() in here.parents:
        raise ValueError(
            f"Cannot export to '{path}': it is the current folder or holds it. "
            "Name a new folder for the export."
        )
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ValueError(
                f"Cannot export to '{path}': the folder exists and is not empty. "
                "Pass overwrite=True (--overwrite) to replace it, or choose "
                "another."
            )
        if not _is_export(target):
            shown = ", ".join(sorted(p.name for p in target.iterdir())[:5])
            raise ValueError(
                f"Cannot export to '{path}' with overwrite: it is not an earlier "
                f"export (no {METADATA_NAME}), and overwrite replaces only "
                f"those. It holds: {shown}. Choose another folder."
            )
    return target


def _is_export(folder: Path) -> bool:
    """Whether `folder` holds an export's `covidxray.json` (a SavedModel's in
    `assets.extra/`, a TFLite folder's at its top)."""
    return any(
        (place / METADATA_NAME).is_file() for place in (folder, folder / "assets.extra")
    )


@contextlib.contextmanager
def _staged(target: Path, overwrite: bool) -> Any:
    """A temporary folder beside `target`, renamed to it when the block ends
    without an error and removed when it fails. Without `overwrite`, the
    rename itself refuses a `target` that another run filled meanwhile (a
    folder renames onto an empty one only). With it, an earlier export is
    moved aside first and removed only once the new folder is in place.
    Staging folders of killed runs are removed after a successful export."""
    parent = target.parent if str(target.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=parent))
    mode = file_mode()  # mkdtemp's 0o700 would hide it from a server's user
    os.chmod(staging, mode | (mode & 0o444) >> 2)
    try:
        yield staging
        old = None
        if overwrite and target.is_dir() and any(target.iterdir()):
            if not _is_export(target):
                raise ValueError(
                    f"Cannot export to '{target}' with overwrite: it is no "
                    "longer an earlier export (it changed while this one was "
                    "written). Nothing was replaced."
                )
            # Named so that the sweep of staging folders never matches it.
            prefix = temp_prefix("old-" + target.name)
            old = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            os.replace(target, old / target.name)
        try:
            os.replace(staging, target)
        except OSError as exc:
            if old is not None:  # put the earlier export back
                os.replace(old / target.name, target)
                raise
            raise ValueError(
                f"Cannot export to '{target}': it was filled while this export "
                f"was written ({exc.strerror}). Nothing was replaced."
            ) from exc
        except BaseException:
            if old is not None:
                os.replace(old / target.name, target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        remove_stale(parent, target.name, "", keep=str(staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
