"""Recipe options aimed at source cues: each must change what it says it does."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from covidxray import Augmenter, Classifier, Preprocessing, load_dataset
from covidxray.data.preprocessing import equalize, trim_box
from covidxray.datasets import make_synthetic, synthetic_xray


def framed(size: int = 120) -> np.ndarray:
    """A radiograph in a black frame, with a white burnt-in marker in a corner."""
    arr = np.zeros((size, size), np.uint8)
    inner = synthetic_xray(
        np.random.default_rng(0), (size - 20, size - 20), opacities=False
    )
    arr[10:-10, 10:-10] = inner
    arr[12:18, 12:18] = 255  # the marker, inside the picture's corner
    return arr


def test_trim_cuts_the_frame_and_the_marker() -> None:
    arr = framed()
    box = trim_box(Image.fromarray(arr), 0.1)
    left, top, right, bottom = box
    assert (left, top, right, bottom) == (20, 20, 100, 100)  # frame 10, then 10%
    seen = Preprocessing((100, 100), trim=0.1).load(arr)[:, :, 0]
    plain = Preprocessing((100, 100)).load(arr)[:, :, 0]
    assert plain.max() == 255 and seen.max() < 255  # the marker is gone
    assert (plain[:5] == 0).all() and seen[:5].mean() > 20  # and the frame
    # A heatmap maps back inside the box only.
    prep = Preprocessing((50, 50), trim=0.1)
    back = prep.map_back(
        np.ones((50, 50)), (120, 120), prep.seen_box(Image.fromarray(arr))
    )
    assert back[top:bottom, left:right].min() > 0.99 and back[:top].max() == 0


def test_equalisation_spreads_a_dull_image_and_clahe_works_locally() -> None:
    rng = np.random.default_rng(0)
    dull = Image.fromarray(rng.integers(100, 140, (64, 64), dtype=np.uint8))
    for mode in ("histogram", "clahe"):
        assert np.asarray(equalize(dull, mode)).std() > 2 * np.asarray(dull).std()
    # The same patch in a dark and in a bright surrounding: one global mapping
    # treats both alike, CLAHE does not.
    arr = (rng.integers(0, 6, (64, 128)) + 40).astype(np.uint8)
    arr[:, 64:] += 160
    patch = rng.integers(90, 110, (4, 4), dtype=np.uint8)
    arr[26:30, 26:30] = patch  # small beside a tile (8 x 16 pixels)
    arr[26:30, 90:94] = patch
    image = Image.fromarray(arr)
    hist = np.asarray(equalize(image, "histogram"))
    clahe = np.asarray(equalize(image, "clahe")).astype(int)
    np.testing.assert_array_equal(hist[26:30, 26:30], hist[26:30, 90:94])
    assert np.abs(clahe[26:30, 26:30] - clahe[26:30, 90:94]).mean() > 8
    prep = Preprocessing((64, 64), equalize="clahe")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    with pytest.raises(ValueError, match="`equalize` argument of Preprocessing"):
        Preprocessing((8, 8), equalize="adaptive")
    with pytest.raises(ValueError, match="`trim` argument of Preprocessing"):
        Preprocessing((8, 8), trim=0.6)


@pytest.mark.parametrize(
    ("option", "measure"),
    [
        ({"gamma": (0.4, 0.5)}, "brighter"),
        ({"sharpness": (-1.0, -1.0)}, "smoother"),
        ({"sharpness": (1.5, 1.5)}, "sharper"),
        ({"noise": 0.2}, "noisier"),
        ({"jpeg_quality": (5, 5)}, "blocky"),
        ({"downscale": (0.2, 0.2)}, "smoother"),
    ],
)
def test_each_acquisition_change_does_what_it_says(option: dict, measure: str) -> None:
    rng = np.random.default_rng(0)
    pictures = np.stack(
        [synthetic_xray(rng, (64, 64), opacities=k % 2 == 0) for k in range(4)]
    )[..., None]
    before = pictures.astype(np.float32) / 255.0
    after = (
        Augmenter(**option).augment(pictures, [3, 4], output_dtype="float32").numpy()
    )

    def detail(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x, axis=2)).mean())

    if measure == "brighter":
        assert after.mean() > before.mean() + 0.05
    elif measure == "smoother":
        assert detail(after) < 0.8 * detail(before)
    elif measure == "sharper":
        assert detail(after) > 1.2 * detail(before)
    elif measure == "noisier":
        flat = np.full((2, 32, 32, 1), 128, np.uint8)
        noisy = Augmenter(**option).augment(flat, [1, 2], output_dtype="float32")
        assert float(np.std(noisy)) > 0.02
    else:  # JPEG at quality 5: 8x8 blocks, visible as jumps at block edges
        jumps = np.abs(np.diff(after, axis=2))
        assert jumps[:, :, 7::8].mean() > 1.2 * jumps[:, :, 3::8].mean()
    assert after.min() >= 0.0 and after.max() <= 1.0
    # Same seed, same images.
    again = Augmenter(**option).augment(pictures, [3, 4], output_dtype="float32")
    np.testing.assert_array_equal(after, again.numpy())


def test_the_acquisition_preset_and_bad_arguments() -> None:
    aug = Augmenter.acquisition(seed=1)
    assert aug.params.jpeg_quality == (30, 95) and aug.params.downscale == (0.3, 1.0)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert tuple(aug.augment(rgb, [1, 1], output_dtype="float32").shape) == (
        2,
        32,
        32,
        3,
    )
    for bad, match in (
        ({"downscale": (0.0, 1.0)}, "`downscale`"),
        ({"jpeg_quality": (0, 50)}, "`jpeg_quality`"),
        ({"noise": 2.0}, "`noise`"),
        ({"gamma": (0.0, 1.0)}, "`gamma`"),
    ):
        with pytest.raises(ValueError, match=match):
            Augmenter(**bad)


def two_sources(tmp_path: Path) -> dict[str, Path]:
    a = make_synthetic(tmp_path / "a", n_per_class=30, image_size=(24, 24), seed=1)
    b = make_synthetic(tmp_path / "b", n_per_class=10, image_size=(24, 24), seed=2)
    for path in sorted((b / "covid").iterdir())[3:]:
        path.unlink()  # b: 10 normal, 3 covid
    return {"a": a, "b": b}


def test_balanced_views_draw_the_classes_evenly(tmp_path: Path) -> None:
    data = load_dataset(two_sources(tmp_path), image_size=(8, 8), validation_split=0.0)
    plain = data.draw_weights("train")
    np.testing.assert_allclose(plain, 1 / len(plain))
    recs = data.split_records("train")

    def share(weights: np.ndarray, source: str) -> float:
        inside = np.array([r.source == source for r in recs])
        covid = np.array([r.label == "covid" for r in recs])
        return float(weights[inside & covid].sum() / weights[inside].sum())

    by_source = data.balanced("source").draw_weights("train")
    assert share(plain, "b") == pytest.approx(3 / 13)
    assert share(by_source, "b") == pytest.approx(0.5)  # within b: half covid
    assert by_source[[r.source == "b" for r in recs]].sum() == pytest.approx(13 / 73)
    # The batches follow the weights: count the labels drawn over many passes.
    batches = data.balanced("class").as_tf_dataset("train", shuffle=True)
    drawn = np.concatenate([y.numpy() for _ in range(20) for _, y in batches])
    assert len(drawn) == 20 * len(recs)
    assert abs(drawn.mean() - 0.5) < 0.05  # 33 of 73 covid in the data, half drawn
    with pytest.raises(ValueError, match="`by` argument of balanced"):
        data.balanced("patient")


def test_spectral_decoupling_keeps_the_logits_small(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((128, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(int)
    x[y == 1, 0, 0, 0] = 1.0  # an easy cue a model grows confident on

    def logits(strength: float) -> float:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(1, "sigmoid"),
            ]
        )
        clf = Classifier(
            model,
            class_names=("a", "b"),
            learning_rate=0.05,
            spectral_decoupling=strength,
        )
        clf.fit((x, y), epochs=30, verbose=0, class_weight=None)
        p = np.clip(clf.predict_proba(x)[:, 1], 1e-7, 1 - 1e-7)
        return float(np.abs(np.log(p / (1 - p))).mean())

    assert logits(1.0) < 0.5 * logits(0.0)
    # The strength is kept in the model file: a loaded model trains with it.
    clf = Classifier(
        keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(1, "sigmoid"),
            ]
        ),
        class_names=("a", "b"),
        spectral_decoupling=0.3,
    )
    clf.fit((x, y), epochs=1, verbose=0).save(tmp_path / "sd.keras")
    loaded = Classifier.load(tmp_path / "sd.keras")
    assert loaded.metadata_.spectral_decoupling == loaded.spectral_decoupling == 0.3
    loaded.fit((x, y), epochs=1, verbose=0)
    assert loaded.model_.loss.strength == pytest.approx(0.3)
    from covidxray.training import compile_for

    with pytest.raises(ValueError, match="`spectral_decoupling` argument"):
        compile_for(
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
            "adam",
            1e-3,
            -1.0,
        )


def test_a_balanced_view_gets_no_class_weights_and_no_feature_cache(
    tmp_path: Path,
) -> None:
    from covidxray import _inputs

    data = load_dataset(two_sources(tmp_path), image_size=(8, 8), validation_split=0.0)
    view = data.balanced("source")
    _, _, labels = _inputs.training_batches(
        view, None, batch_size=8, augmenter=None, seed=0
    )
    assert _inputs.class_weights("balanced", labels, 2) is None  # draws weigh them
    assert _inputs.class_weights({0: 1.0, 1: 3.0}, labels, 2) == {0: 1.0, 1: 3.0}
    plain = _inputs.class_weights("balanced", data.labels("train"), 2)
    assert plain is not None and plain[1] > plain[0]
    from covidxray.features import use_feature_cache
    from covidxray.models import build_pretrained

    model = build_pretrained("mobilenetv2", input_shape=(32, 32, 1), weights=None)
    kwargs = {"augmenter": None, "strategy": None}
    assert use_feature_cache("auto", model, **kwargs)
    assert not use_feature_cache("auto", model, sampled=True, **kwargs)
    with pytest.raises(ValueError, match="a balanced view draws other images"):
        use_feature_cache(True, model, sampled=True, **kwargs)


def test_a_flat_image_is_left_as_it_is_by_equalisation() -> None:
    flat = Image.fromarray(np.full((16, 16), 128, np.uint8))
    assert np.asarray(equalize(flat, "histogram")).max() == 128
    assert abs(int(np.asarray(equalize(flat, "clahe")).mean()) - 128) <= 1
