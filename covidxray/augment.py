"""`Augmenter`: the paper's ImageDataGenerator augmentations, as one fused warp.

Rotation, shear, zoom, shift and flip are composed into one affine matrix per
image and applied with a single `ImageProjectiveTransformV3` call for the whole
batch; brightness and contrast are one multiply-add. The parameters mean what
Keras' `ImageDataGenerator` parameters meant, so the paper's settings carry over.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from ._choices import AUGMENT_PRESETS
from ._deprecation import deprecated
from ._validation import check_choice
from .data.decode import decode_file, is_image_name

logger = logging.getLogger("covidxray")

__all__ = ["Augmenter", "AugmentLayer"]

FILL_MODES = ("nearest", "constant", "reflect", "wrap")
#: The names `Augmenter.preset` knows (the command line's `--augment` choices).
PRESETS = AUGMENT_PRESETS
_SAVE_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG"}


@dataclass(frozen=True)
class _Params:
    rotation: float = 0.0
    shear: float = 0.0
    zoom: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)
    horizontal_flip: bool = False
    brightness: tuple[float, float] | None = None
    contrast: tuple[float, float] | None = None
    fill_mode: str = "nearest"
    gamma: tuple[float, float] | None = None
    sharpness: tuple[float, float] | None = None
    noise: float = 0.0
    jpeg_quality: tuple[int, int] | None = None
    downscale: tuple[float, float] | None = None


def _pair(name: str, value: Any, *, around: float | None = None) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        v = float(value)
        if v < 0:
            raise ValueError(
                f"The `{name}` argument of Augmenter must be >= 0. Received: {value!r}."
            )
        return (around - v, around + v) if around is not None else (v, v)
    try:
        lo, hi = (float(x) for x in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"The `{name}` argument of Augmenter must be a number or a pair "
            "(low, high). "
            f"Received: {value!r}."
        ) from None
    if lo > hi:
        raise ValueError(
            f"The `{name}` argument of Augmenter must have low <= high. "
            f"Received: {value!r}."
        )
    return lo, hi


def _positive_pair(name: str, value: Any) -> tuple[float, float]:
    lo, hi = _pair(name, value)
    if lo <= 0:
        raise ValueError(
            f"The `{name}` argument of Augmenter must be above 0. Received: {value!r}."
        )
    return lo, hi


def _scale_pair(value: Any) -> tuple[float, float]:
    lo, hi = _pair("downscale", value)
    if not 0 < lo <= hi <= 1:
        raise ValueError(
            "The `downscale` argument of Augmenter must be a pair (low, high) with "
            f"0 < low <= high <= 1. Received: {value!r}."
        )
    return lo, hi


def _quality(value: Any) -> tuple[int, int]:
    lo, hi = _pair("jpeg_quality", value)
    if not 1 <= lo <= hi <= 100:
        raise ValueError(
            "The `jpeg_quality` argument of Augmenter must be a pair (low, high) "
            f"with 1 <= low <= high <= 100. Received: {value!r}."
        )
    return int(lo), int(hi)


def _noise(value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            "The `noise` argument of Augmenter must be a standard deviation in "
            f"[0, 1). Received: {value!r}."
        )
    return float(value)


def _blur3(x: tf.Tensor) -> tf.Tensor:
    """A 3x3 binomial blur of (N, H, W, C) floats, edges repeated."""
    kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0
    k2 = kernel[:, None] * kernel[None, :]
    channels = tf.shape(x)[-1]
    weights = tf.tile(k2[:, :, None, None], tf.stack([1, 1, channels, 1]))
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, weights, [1, 1, 1, 1], "VALID")


def _shift(value: Any) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, (int, float)) else tuple(value)
    try:
        horizontal, vertical = (float(v) for v in pair)
    except (TypeError, ValueError):
        horizontal = vertical = -1.0
    if not (0.0 <= horizontal < 1.0 and 0.0 <= vertical < 1.0):
        raise ValueError(
            "The `shift` argument of Augmenter must be a fraction in [0, 1) or a pair "
            f"(horizontal, vertical) of them. Received: {value!r}."
        )
    return horizontal, vertical


class Augmenter:
    """Random augmentations of image batches, with `ImageDataGenerator` meanings.

    - `rotation`: degrees; each image turns by an angle drawn from
      [-rotation, rotation].
    - `shear`: degrees (as in ImageDataGenerator, whose `shear_range=0.2` means
      0.2 degrees, not 0.2 radians); the shear angle is drawn from
      [-shear, shear].
    - `zoom`: a float `z` means factors drawn from [1 - z, 1 + z], a pair
      `(lo, hi)` that range; width and height draw independently. A factor `f`
      shows `f` times the field of view: below 1 zooms in, above 1 zooms out.
    - `shift`: a fraction of the size; each image moves by up to
      `shift * width` sideways and `shift * height` up or down. A pair gives
      `(horizontal, vertical)` fractions.
    - `horizontal_flip`: mirror left-right with probability 1/2.
    - `brightness`: `(lo, hi)`; the image is multiplied by a factor from that
      range, then clipped to [0, 1] (ImageDataGenerator's `brightness_range`).
    - `contrast`: `(lo, hi)`; distances from the image mean are multiplied by a
      factor from that range.
    - `fill_mode`: how pixels from outside the image are filled: `"nearest"`,
      `"constant"` (black), `"reflect"` or `"wrap"`.

    Acquisition-style changes, which make how a picture was taken and stored
    (one hospital's exposure, sharpening, noise, compression and resolution
    against another's) less useful to a model:

    - `gamma`: `(lo, hi)`; each image becomes `x ** g`, `g` drawn log-uniformly.
    - `sharpness`: `(lo, hi)`; `x + a * (x - blur(x))` with `a` from that range:
      below 0 blurs (-1 is a 3x3 binomial blur), above 0 sharpens.
    - `noise`: Gaussian noise with a standard deviation drawn from
      [0, noise] per image (in [0, 1] units).
    - `jpeg_quality`: `(lo, hi)`; each image is JPEG-encoded and decoded at a
      quality drawn from that range.
    - `downscale`: `(lo, hi)`; each image is shrunk by a factor from that
      range and enlarged back (bilinear), losing detail as a smaller original
      would.
    - `seed`: with a seed, the same seed gives the same images.

    Inputs are float images in [0, 1] (or uint8), as a batch (N, H, W, C) or a
    single image (H, W, C), with 1 or 3 channels. Shape and dtype are kept and
    values stay in [0, 1]. Call it on a batch, map it over a `tf.data` dataset
    of `(images, labels)`, or put `as_layer()` in a model.

    Examples:
        >>> import numpy as np
        >>> from covidxray import Augmenter
        >>> aug = Augmenter.paper_training()
        >>> batch = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
        >>> out = aug(batch)
        >>> out.shape, out.dtype.name, float(out.numpy().min()) >= 0.0
        (TensorShape([4, 32, 32, 1]), 'float32', True)
    """

    def __init__(
        self,
        *,
        rotation: float = 0.0,
        shear: float = 0.0,
        zoom: float | Sequence[float] = 0.0,
        shift: float | Sequence[float] = 0.0,
        horizontal_flip: bool = False,
        brightness: Sequence[float] | None = None,
        contrast: Sequence[float] | None = None,
        fill_mode: str = "nearest",
        gamma: Sequence[float] | None = None,
        sharpness: Sequence[float] | None = None,
        noise: float = 0.0,
        jpeg_quality: Sequence[int] | None = None,
        downscale: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> None:
        check_choice("fill_mode", fill_mode, FILL_MODES, "Augmenter")
        zoom_range = _pair("zoom", zoom, around=1.0)
        if zoom_range[0] <= 0:
            raise ValueError(
                "The `zoom` argument of Augmenter must keep factors above 0. "
                f"Received: {zoom!r}."
            )
        self.params = _Params(
            rotation=abs(float(rotation)),
            shear=abs(float(shear)),
            zoom=zoom_range,
            shift=_shift(shift),
            horizontal_flip=bool(horizontal_flip),
            brightness=None if brightness is None else _pair("brightness", brightness),
            contrast=None if contrast is None else _pair("contrast", contrast),
            fill_mode=fill_mode,
            gamma=None if gamma is None else _positive_pair("gamma", gamma),
            sharpness=None if sharpness is None else _pair("sharpness", sharpness),
            noise=_noise(noise),
            jpeg_quality=None if jpeg_quality is None else _quality(jpeg_quality),
            downscale=None if downscale is None else _scale_pair(downscale),
        )
        self.seed = seed
        self._generator = (
            tf.random.Generator.from_seed(seed)
            if seed is not None
            else tf.random.Generator.from_non_deterministic_state()
        )

    # ------------------------------------------------------------------ presets

    @classmethod
    def paper_training(cls, *, seed: int | None = None) -> Augmenter:
        """The published comparison's CNN training augmentation: rotation 40,
        shear 0.2, zoom 0.2, shift 0.2, horizontal flip, brightness (0.2, 1.0),
        fill 'nearest'."""
        return cls(
            rotation=40,
            shear=0.2,
            zoom=0.2,
            shift=0.2,
            horizontal_flip=True,
            brightness=(0.2, 1.0),
            seed=seed,
        )

    @classmethod
    def paper_expansion(cls, *, seed: int | None = None) -> Augmenter:
        """The published comparison's offline COVID expansion: rotation 5,
        shear 0.2, zoom 0.3, horizontal flip, brightness (0.2, 1.0), fill
        'nearest'."""
        return cls(
            rotation=5,
            shear=0.2,
            zoom=0.3,
            horizontal_flip=True,
            brightness=(0.2, 1.0),
            seed=seed,
        )

    @classmethod
    def seed_training(cls, *, seed: int | None = None) -> Augmenter:
        """Deprecated name of `paper_training` ("seed" also means a random seed)."""
        deprecated("Augmenter.seed_training", "Augmenter.paper_training")
        return cls.paper_training(seed=seed)

    @classmethod
    def seed_expansion(cls, *, seed: int | None = None) -> Augmenter:
        """Deprecated name of `paper_expansion` ("seed" also means a random seed)."""
        deprecated("Augmenter.seed_expansion", "Augmenter.paper_expansion")
        return cls.paper_expansion(seed=seed)

    @classmethod
    def xray(cls, *, seed: int | None = None) -> Augmenter:
        """A milder default for chest X-rays: rotation 7, zoom 0.1, shift 0.05,
        brightness (0.85, 1.15), contrast (0.85, 1.15), no flip, fill 'constant'.

        No flip, because the heart sits on the left: a mirrored chest X-ray is
        anatomically wrong (situs inversus is rare), and side markers become
        mirror text. Small angles and shifts match how patients are positioned;
        the paper's brightness down to 0.2 makes many images nearly black.
        """
        return cls(
            rotation=7,
            zoom=0.1,
            shift=0.05,
            brightness=(0.85, 1.15),
            contrast=(0.85, 1.15),
            fill_mode="constant",
            seed=seed,
        )

    @classmethod
    def acquisition(cls, *, seed: int | None = None) -> Augmenter:
        """`xray()` plus acquisition-style changes: gamma (0.7, 1.4), sharpness
        (-1, 1.5), noise up to 0.03, JPEG quality (30, 95) and downscaling by
        (0.3, 1.0). They vary what tells sources apart (exposure, processing,
        noise, compression, resolution: seed-xray's COVID images are about
        three times larger than its CheXpert images) and keep the anatomy.
        """
        return cls(
            **{
                **asdict(cls.xray().params),
                "gamma": (0.7, 1.4),
                "sharpness": (-1.0, 1.5),
                "noise": 0.03,
                "jpeg_quality": (30, 95),
                "downscale": (0.3, 1.0),
            },
            seed=seed,
        )

    @classmethod
    def preset(cls, name: str, *, seed: int | None = None) -> Augmenter:
        """The preset called `name`, one of `PRESETS`: `"paper"`
        (`paper_training`), `"xray"` or `"acquisition"`.

        Examples:
            >>> from covidxray import Augmenter
            >>> Augmenter.preset("xray").get_config() == Augmenter.xray().get_config()
            True
        """
        if name == "seed":
            deprecated("the preset name 'seed'", "'paper'")
            name = "paper"
        check_choice("name", name, PRESETS, "Augmenter.preset")
        build = {
            "paper": cls.paper_training,
            "xray": cls.xray,
            "acquisition": cls.acquisition,
        }[name]
        return build(seed=seed)

    def get_config(self) -> dict[str, Any]:
        """The parameters, enough to rebuild this augmenter."""
        config = asdict(self.params)
        return {**config, "seed": self.seed}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"Augmenter({shown})"

    # ------------------------------------------------------------------ core

    def _matrices(
        self, n: tf.Tensor, height: tf.Tensor, width: tf.Tensor, seed: tf.Tensor
    ) -> tf.Tensor:
        """Output-to-input projective transforms (N, 8) for a batch."""
        p = self.params
        seeds = tf.random.experimental.stateless_split(seed, 6)

        def uniform(i: int, lo: float, hi: float, shape: Any = None) -> tf.Tensor:
            return tf.random.stateless_uniform(
                shape if shape is not None else tf.stack([n]), seeds[i], lo, hi
            )

        w = tf.cast(width, tf.float32)
        h = tf.cast(height, tf.float32)
        theta = uniform(0, -p.rotation, p.rotation) * (math.pi / 180.0)
        shear = uniform(1, -p.shear, p.shear) * (math.pi / 180.0)
        zoom = uniform(2, p.zoom[0], p.zoom[1], tf.stack([n, 2]))
        zx, zy = zoom[:, 0], zoom[:, 1]
        shift = uniform(3, -1.0, 1.0, tf.stack([n, 2]))
        dx = shift[:, 0] * p.shift[0] * w
        dy = shift[:, 1] * p.shift[1] * h
        if p.horizontal_flip:
            flip = tf.where(uniform(4, 0.0, 1.0) < 0.5, -1.0, 1.0)
        else:
            flip = tf.ones_like(theta)
        cos, sin = tf.cos(theta), tf.sin(theta)
        # p_in = c + F R S Z (p_out - c) - d, with
        # R = [[cos, -sin], [sin, cos]], S = [[1, -sin(sh)], [0, cos(sh)]],
        # Z = diag(zx, zy), F = diag(flip, 1).
        s01, s11 = -tf.sin(shear), tf.cos(shear)
        r00, r01 = cos, cos * s01 - sin * s11
        r10, r11 = sin, sin * s01 + cos * s11
        a00, a01 = flip * r00 * zx, flip * r01 * zy
        a10, a11 = r10 * zx, r11 * zy
        cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
        b0 = cx - a00 * cx - a01 * cy - dx * flip
        b1 = cy - a10 * cx - a11 * cy - dy
        zeros = tf.zeros_like(a00)
        return tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)

    @property
    def _geometric(self) -> bool:
        p = self.params
        return bool(
            p.rotation
            or p.shear
            or p.zoom != (1.0, 1.0)
            or any(p.shift)
            or p.horizontal_flip
        )

    def augment(
        self, images: Any, seed: Any, *, output_dtype: str | None = None
    ) -> tf.Tensor:
        """Augment with an explicit stateless seed: the same seed, the same output.

        Args:
            images: (N, H, W, C) or (H, W, C), float in [0, 1] or uint8.
            seed: A pair of integers (or an int32 tensor of shape (2,)).
            output_dtype: By default the input's dtype. `"float32"` on uint8
                input returns floats in [0, 1] and is the fast path: the warp
                runs on the uint8 pixels (interpolated values are truncated to
                integers) and the conversion to float shares one multiply with
                the brightness change.

        Returns:
            The augmented images, same shape; the input's dtype unless
            `output_dtype` says otherwise.
        """
        x = tf.convert_to_tensor(images)
        in_dtype = x.dtype
        out_dtype = tf.as_dtype(output_dtype) if output_dtype else in_dtype
        single = x.shape.rank == 3
        if single:
            x = x[None]
        if x.shape.rank != 4:
            raise ValueError(
                "Expected images of shape (N, H, W, C) or (H, W, C). "
                f"Received shape {x.shape}."
            )
        if in_dtype != tf.uint8:
            x = tf.cast(x, tf.float32)
        seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
        shape = tf.shape(x)
        n, height, width = shape[0], shape[1], shape[2]
        key_geo, key_bright, key_contrast = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        # A fourth key, from the seed on its own: the first three are as before.
        key_acquire = tf.random.experimental.stateless_fold_in(seed, 4)
        if self._geometric:
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x,
                transforms=self._matrices(n, height, width, key_geo),
                output_shape=tf.stack([height, width]),
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode=self.params.fill_mode.upper(),
            )
        p = self.params
        scale = 1.0 / 255.0 if in_dtype == tf.uint8 else 1.0
        if p.brightness is not None:
            factor = tf.random.stateless_uniform(
                tf.stack([n, 1, 1, 1]), key_bright, *p.brightness
            )
            x = tf.cast(x, tf.float32) * (factor * scale)
        else:
            x = tf.cast(x, tf.float32) * scale
        if p.contrast is not None:
            factor = tf.random.stateless_uniform(
                tf.stack([n, 1, 1, 1]), key_contrast, *p.contrast
            )
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            x = (x - mean) * factor + mean
        if p.contrast is not None or (p.brightness is not None and p.brightness[1] > 1):
            # The warp interpolates and fills within the input's range, and a
            # factor <= 1 keeps [0, 1]: only these two can leave it.
            x = tf.clip_by_value(x, 0.0, 1.0)
        if self._acquisition:
            x = self._acquire(x, n, key_acquire)
        if out_dtype == tf.uint8:
            x = tf.cast(tf.round(x * 255.0), tf.uint8)
        else:
            x = tf.cast(x, out_dtype)
        return x[0] if single else x

    @property
    def _acquisition(self) -> bool:
        p = self.params
        return bool(p.gamma or p.sharpness or p.noise or p.jpeg_quality or p.downscale)

    def _acquire(self, x: tf.Tensor, n: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Gamma, resolution, sharpness, noise and JPEG, per image, on floats in
        [0, 1]; returns floats in [0, 1]."""
        p = self.params
        keys = tf.random.experimental.stateless_split(seed, 5)
        per_image = tf.stack([n, 1, 1, 1])
        if p.gamma is not None:
            log_g = tf.random.stateless_uniform(
                per_image, keys[0], math.log(p.gamma[0]), math.log(p.gamma[1])
            )
            x = tf.pow(tf.maximum(x, 1e-6), tf.exp(log_g))
        if p.downscale is not None:
            factors = tf.random.stateless_uniform(tf.stack([n]), keys[1], *p.downscale)
            size = tf.shape(x)[1:3]

            def shrink(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
                image, f = args
                small = tf.maximum(
                    1, tf.cast(tf.round(tf.cast(size, tf.float32) * f), tf.int32)
                )
                return tf.image.resize(tf.image.resize(image, small), size)

            x = tf.map_fn(shrink, (x, factors), fn_output_signature=tf.float32)
        if p.sharpness is not None:
            amount = tf.random.stateless_uniform(per_image, keys[2], *p.sharpness)
            x = x + amount * (x - _blur3(x))
        if p.noise:
            sigma = tf.random.stateless_uniform(per_image, keys[3], 0.0, p.noise)
            x = x + sigma * tf.random.stateless_normal(tf.shape(x), keys[4])
        x = tf.clip_by_value(x, 0.0, 1.0)
        if p.jpeg_quality is not None:
            quality = tf.random.stateless_uniform(
                tf.stack([n]),
                tf.random.experimental.stateless_fold_in(seed, 7),
                p.jpeg_quality[0],
                p.jpeg_quality[1] + 1,
                dtype=tf.int32,
            )

            def recompress(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
                image, q = args
                return tf.image.adjust_jpeg_quality(image, q)

            x = tf.map_fn(recompress, (x, quality), fn_output_signature=tf.float32)
        return x

    def next_seed(self) -> tf.Tensor:
        """The next stateless seed from this augmenter's own generator."""
        return self._generator.make_seeds(1)[:, 0]

    def __call__(self, images: Any, labels: Any = None) -> Any:
        """Augment a batch with the next seed of this augmenter's generator.

        Called with `(images, labels)`, as `dataset.map(augmenter)` does, it
        returns `(augmented, labels)`.
        """
        out = self.augment(images, self.next_seed())
        return out if labels is None else (out, labels)

    def as_layer(self, name: str = "augment") -> AugmentLayer:
        """A serialisable Keras layer that augments only when `training=True`."""
        return AugmentLayer(self.get_config(), name=name)

    # ------------------------------------------------------------------ offline

    def expand(
        self,
        source_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        *,
        total: int | None = None,
        factor: float | None = None,
        format: str = "jpg",
        seed: int = 0,
    ) -> list[Path]:
        """Write augmented copies of the images of one folder into another.

        Every source image is used evenly: with `n` sources and `total` new
        images, each source gets `total // n` copies and the first
        `total % n` get one more (the paper's loop augmented only the last image
        it read). Names show the origin: `<stem>_aug<k>.<ext>`.

        Args:
            source_dir: Folder of images (read non-recursively).
            output_dir: Where to write; must not be `source_dir` or inside it.
            total: Number of new images.
            factor: New images per source image (`total = round(factor * n)`).
                With neither, one new image per source image.
            format: `"jpg"` or `"png"`.
            seed: The same seed writes the same images.

        Returns:
            The paths written, in order.

        Raises:
            ValueError: Bad arguments, or `output_dir` inside `source_dir`.
            FileExistsError: Never raised for existing names: `k` skips past
                files that exist, so nothing is overwritten.
        """
        check_choice("format", format, tuple(_SAVE_FORMATS), "Augmenter.expand")
        src = Path(source_dir)
        out = Path(output_dir)
        if not src.is_dir():
            raise ValueError(
                f"The `source_dir` argument must be a folder. Received: '{src}'."
            )
        src_real, out_real = src.resolve(), out.resolve()
        if out_real == src_real or src_real in out_real.parents:
            raise ValueError(
                "The `output_dir` argument of expand must not be the source folder or "
                "inside it (the seed wrote into the folder it read). "
                f"Received: '{out}' for source "
                f"'{src}'."
            )
        sources = sorted(
            p for p in src.iterdir() if p.is_file() and is_image_name(p.name)
        )
        if not sources:
            raise ValueError(f"Found no images in '{src}'.")
        if total is not None and factor is not None:
            raise ValueError("Pass either `total` or `factor` to expand, not both.")
        n_new = (
            total
            if total is not None
            else round((1.0 if factor is None else factor) * len(sources))
        )
        if not isinstance(n_new, int) or n_new < 0:
            raise ValueError(
                f"The `total` argument of expand must be >= 0. Received: {total!r}."
            )
        out.mkdir(parents=True, exist_ok=True)
        per_source = [
            n_new // len(sources) + (1 if i < n_new % len(sources) else 0)
            for i in range(len(sources))
        ]
        ext = "jpg" if format in ("jpg", "jpeg") else "png"
        written: list[Path] = []
        for i, (path, count) in enumerate(zip(sources, per_source, strict=True)):
            if count == 0:
                continue
            img, _ = decode_file(path)
            pixels = np.asarray(img, dtype=np.float32) / 255.0
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
            k = 0
            for j in range(count):
                result = self.augment(pixels, [seed, i * 1_000_003 + j]).numpy()
                array = np.round(result * 255.0).astype(np.uint8)
                image = Image.fromarray(
                    array[:, :, 0] if array.shape[-1] == 1 else array
                )
                while (out / f"{path.stem}_aug{k}.{ext}").exists():
                    k += 1
                target = out / f"{path.stem}_aug{k}.{ext}"
                image.save(
                    target,
                    format=_SAVE_FORMATS[format],
                    **({"quality": 95} if ext == "jpg" else {}),
                )
                written.append(target)
                k += 1
        logger.info(
            "expand wrote %d images from %d sources into '%s'.",
            len(written),
            len(sources),
            out,
        )
        return written


@keras.saving.register_keras_serializable(package="covidxray")
class AugmentLayer(keras.layers.Layer):
    """An `Augmenter` as a Keras layer: active only when `training=True`."""

    def __init__(self, augmenter_config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.augmenter_config = dict(augmenter_config)
        self._augmenter = Augmenter(**self.augmenter_config)
        seed = self.augmenter_config.get("seed")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        seed = self.seed_generator.next()
        return self._augmenter.augment(inputs, seed)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "augmenter_config": self.augmenter_config}
