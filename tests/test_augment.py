"""Tests of Augmenter: geometry, determinism, layer behaviour and offline expand."""

from __future__ import annotations

import functools
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from covidxray import Augmenter
from helpers import write_image


def marker(size: int = 41, row: int = 20, col: int = 30) -> np.ndarray:
    x = np.zeros((1, size, size, 1), np.float32)
    x[0, row, col, 0] = 1.0
    return x


def peak(image: np.ndarray) -> tuple[int, int]:
    plane = np.asarray(image)[0, :, :, 0]
    r, c = np.unravel_index(np.argmax(plane), plane.shape)
    return int(r), int(c)


def test_flip_moves_marker_to_its_mirror() -> None:
    aug = Augmenter(horizontal_flip=True)
    seen = {peak(aug.augment(marker(), [s, 0])) for s in range(12)}
    assert seen == {(20, 30), (20, 10)}


def test_shift_moves_marker_by_the_stated_amount() -> None:
    x = marker()
    aug = Augmenter(shift=(0.25, 0.0))
    columns = [peak(aug.augment(x, [s, 1]))[1] for s in range(40)]
    moves = np.array(columns) - 30
    assert np.all(np.abs(moves) <= 0.25 * 41 + 1)
    assert moves.max() >= 6 and moves.min() <= -6  # the range is used on both sides
    rows = [peak(aug.augment(x, [s, 1]))[0] for s in range(10)]
    assert set(rows) == {20}  # no vertical shift was asked for


def test_zoom_scales_about_the_centre() -> None:
    out = Augmenter(zoom=(0.5, 0.5)).augment(marker(), [0, 0])
    assert peak(out) == (20, 40)  # 10 px right of centre becomes 20 px
    out = Augmenter(zoom=(2.0, 2.0)).augment(marker(size=81, row=40, col=60), [0, 0])
    assert peak(out) == (40, 50)  # 20 px right of centre becomes 10 px


def test_rotation_keeps_distance_to_centre() -> None:
    aug = Augmenter(rotation=90)
    for s in range(5):
        r, c = peak(aug.augment(marker(), [s, 2]))
        assert abs(np.hypot(r - 20, c - 20) - 10) <= 1.5


def test_brightness_scales_the_mean() -> None:
    x = np.full((8, 16, 16, 1), 0.5, np.float32)
    out = np.asarray(Augmenter(brightness=(0.5, 0.5)).augment(x, [0, 0]))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0.25, atol=1e-6)
    out = np.asarray(Augmenter(brightness=(0.2, 1.0)).augment(x, [0, 0]))
    means = out.mean(axis=(1, 2, 3))
    assert np.all((means >= 0.1 - 1e-6) & (means <= 0.5 + 1e-6)) and means.std() > 0.01


def test_same_seed_same_images_other_seed_other_images() -> None:
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    aug = Augmenter.paper_training()
    a, b, c = (np.asarray(aug.augment(x, s)) for s in ([1, 2], [1, 2], [1, 3]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    first = [np.asarray(Augmenter.paper_training(seed=7)(x)) for _ in range(2)]
    np.testing.assert_array_equal(first[0], first[1])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_shape_and_dtype_are_kept_and_brightness_darkens(
    channels: int, dtype: type
) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 24, 20, channels))
    x = (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(np.float32)
    out = np.asarray(Augmenter.paper_training(seed=0)(x))
    assert out.shape == x.shape and out.dtype == x.dtype
    # paper_training's brightness range (0.2, 1.0) only darkens: on average by
    # 40%, far beyond what the warp's edge filling can change.
    assert out.astype(np.float64).mean() < 0.85 * x.astype(np.float64).mean()
    single = np.asarray(Augmenter.xray(seed=0)(x[0]))
    assert single.shape == x[0].shape


def test_works_inside_tf_data() -> None:
    images = np.random.default_rng(0).random((10, 16, 16, 1)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(10))).batch(4)
    out = list(ds.map(Augmenter.paper_training(seed=1)))
    assert [tuple(x.shape) for x, _ in out] == [
        (4, 16, 16, 1),
        (4, 16, 16, 1),
        (2, 16, 16, 1),
    ]
    np.testing.assert_array_equal(np.concatenate([y for _, y in out]), np.arange(10))


def test_layer_is_identity_at_inference_and_serialises(tmp_path: Path) -> None:
    layer = Augmenter.paper_training(seed=0).as_layer()
    x = np.random.default_rng(0).random((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    assert not np.array_equal(np.asarray(layer(x, training=True)), x)
    model = keras.Sequential(
        [keras.Input((16, 16, 1)), layer, keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6
    )
    assert loaded.layers[0].augmenter_config["rotation"] == 40.0


def test_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match="`fill_mode` argument of Augmenter must be one of"
    ):
        Augmenter(fill_mode="mirror")
    with pytest.raises(ValueError, match="`zoom` argument"):
        Augmenter(zoom=1.5)
    with pytest.raises(ValueError, match="`shift` argument"):
        Augmenter(shift=2)
    with pytest.raises(ValueError, match="`brightness` argument"):
        Augmenter(brightness=(1.0, 0.5))


def make_sources(folder: Path, n: int) -> list[Path]:
    return [
        write_image(folder / f"src{k}.png", size=(30, 30), seed=k) for k in range(n)
    ]


def test_expand_uses_every_source_evenly_and_writes_exact_count(tmp_path: Path) -> None:
    src = tmp_path / "covid"
    make_sources(src, 4)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "expanded"
    written = Augmenter.paper_expansion().expand(src, out, total=10, seed=0)
    assert len(written) == 10 and all(p.parent == out for p in written)
    stems = sorted(p.name.split("_aug")[0] for p in written)
    assert stems == ["src0"] * 3 + ["src1"] * 3 + ["src2"] * 2 + ["src3"] * 2
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # source untouched
    assert Image.open(written[0]).mode == "L"
    again = Augmenter.paper_expansion().expand(src, out, factor=1, seed=0)
    assert len(again) == 4
    assert len(list(out.iterdir())) == 14  # nothing overwritten
    assert {p.name for p in again}.isdisjoint({p.name for p in written})


def test_expand_refuses_the_source_folder(tmp_path: Path) -> None:
    src = tmp_path / "covid"
    make_sources(src, 2)
    for target in (src, src / "sub"):
        with pytest.raises(ValueError, match="must not be the source folder"):
            Augmenter.paper_expansion().expand(src, target, total=2)
    assert sorted(p.name for p in src.iterdir()) == ["src0.png", "src1.png"]


def test_expand_same_seed_same_files(tmp_path: Path) -> None:
    src = tmp_path / "covid"
    make_sources(src, 2)
    a = Augmenter.paper_expansion().expand(
        src, tmp_path / "a", total=3, seed=5, format="png"
    )
    b = Augmenter.paper_expansion().expand(
        src, tmp_path / "b", total=3, seed=5, format="png"
    )
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_fast_uint8_path_matches_the_float_path() -> None:
    rng = np.random.default_rng(0)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((32, 32))
    )
    x8 = np.repeat(smooth[None, :, :, None], 4, axis=0)
    aug = Augmenter.paper_training()
    fast = np.asarray(aug.augment(x8, [4, 2], output_dtype="float32"))
    slow = np.asarray(aug.augment(x8.astype(np.float32) / 255.0, [4, 2]))
    assert fast.dtype == np.float32 and fast.shape == slow.shape
    assert np.abs(fast - slow).max() <= 1.0 / 255.0 + 1e-6  # uint8 rounding only


def test_dataset_augmentation_is_seeded(synthetic_root) -> None:
    from covidxray import load_dataset

    data = load_dataset(synthetic_root, image_size=(32, 32), batch_size=8)

    def first_batch(seed: int) -> np.ndarray:
        aug = Augmenter.paper_training(seed=seed)
        ds = data.as_tf_dataset(
            "val",
            transform=functools.partial(aug.augment, output_dtype="float32"),
            transform_seed=seed,
        )
        return np.concatenate([x.numpy() for x, _ in ds])

    np.testing.assert_array_equal(first_batch(1), first_batch(1))
    assert not np.array_equal(first_batch(1), first_batch(2))
    plain = np.concatenate([x.numpy() for x, _ in data.val])
    assert first_batch(1).shape == plain.shape and not np.array_equal(
        first_batch(1), plain
    )


def test_paper_presets_and_their_deprecated_seed_names() -> None:
    assert Augmenter.paper_training().params.rotation == 40
    assert Augmenter.paper_expansion().params.zoom == (0.7, 1.3)
    for old, new in (
        (Augmenter.seed_training, Augmenter.paper_training),
        (Augmenter.seed_expansion, Augmenter.paper_expansion),
    ):
        with pytest.warns(DeprecationWarning, match=f"use Augmenter.{new.__name__}"):
            aug = old(seed=3)
        assert aug.get_config() == new(seed=3).get_config()


def test_preset_names_every_preset_and_refuses_others() -> None:
    from covidxray.augment import PRESETS

    assert PRESETS == ("paper", "xray", "acquisition")
    assert Augmenter.preset("acquisition", seed=1).get_config() == (
        Augmenter.acquisition(seed=1).get_config()
    )
    with pytest.warns(DeprecationWarning, match="'paper'"):
        assert Augmenter.preset("seed").params.rotation == 40
    with pytest.raises(ValueError, match="must be one of"):
        Augmenter.preset("flip")
