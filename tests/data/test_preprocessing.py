"""Tests of Preprocessing: one way to read an image, wherever it enters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import (
    Classifier,
    Preprocessing,
    build_cnn,
    load_dataset,
)
from covidxray.data.preprocessing import image_to_array


def test_arguments_are_checked_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="`color_mode` argument of Preprocessing"):
        Preprocessing((8, 8), color_mode="rgba")
    with pytest.raises(ValueError, match="`resize` argument of Preprocessing.*'pad'"):
        Preprocessing((8, 8), resize="squash")
    with pytest.raises(ValueError, match=r"`image_size`.*Received: \(0, 8\)"):
        Preprocessing((0, 8))
    with pytest.raises(ValueError, match="Missing: resize"):
        Preprocessing.from_dict({"image_size": [8, 8], "color_mode": "rgb"})
    prep = Preprocessing([32, 24], color_mode="rgb", resize="crop")  # type: ignore[arg-type]
    assert prep.image_size == (32, 24) and prep.input_shape == (32, 24, 3)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert hash(prep) == hash(Preprocessing((32, 24), "rgb", "crop"))


@pytest.fixture(scope="module")
def awkward_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files that take different decode paths: a large JPEG (reduced-scale
    decoding), an RGBA PNG (composited), a 16-bit PNG and a wide grayscale PNG."""
    root = tmp_path_factory.mktemp("awkward")
    rng = np.random.default_rng(0)
    for cls in ("covid", "normal"):
        (root / cls).mkdir()
        smooth = np.kron(
            rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
            np.ones((20, 20, 1), np.uint8),
        )
        Image.fromarray(smooth).save(root / cls / "large.jpg", quality=90)
        rgba = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
        Image.fromarray(rgba, mode="RGBA").save(root / cls / "alpha.png")
        deep = (rng.integers(0, 4096, (60, 40)) * 16).astype(np.uint16)
        Image.fromarray(deep).save(root / cls / "deep.png")
        wide = rng.integers(0, 256, (30, 90), dtype=np.uint8)
        Image.fromarray(wide, mode="L").save(root / cls / "wide.png")
    return root


@pytest.mark.parametrize("resize", ["stretch", "pad", "crop"])
@pytest.mark.parametrize("color_mode", ["grayscale", "rgb"])
def test_every_entry_point_reads_a_file_the_same_way(
    awkward_files: Path, resize: str, color_mode: str
) -> None:
    prep = Preprocessing((48, 40), color_mode=color_mode, resize=resize)
    kwargs = dict(
        image_size=prep.image_size,
        color_mode=color_mode,
        resize=resize,
        deduplicate=False,
        validation_split=0.0,
        batch_size=4,
    )
    cached = load_dataset(awkward_files, **kwargs)
    uncached = load_dataset(awkward_files, cache=False, **kwargs)
    paths = [r.path for r in cached.split_records("train")]
    assert len(paths) == 8
    from_cache = cached.images("train")
    from_disk = np.concatenate(
        [x.numpy() for x, _ in uncached.as_tf_dataset("train", dtype="uint8")]
    )
    one_by_one = np.stack([prep.load(p) for p in paths])
    clf = Classifier(build_cnn(prep.input_shape), class_names=cached.class_names)
    clf.fit(cached, epochs=1, verbose=0)
    assert clf.preprocessing_ == prep  # taken from the dataset
    for_model = np.round(clf.preprocess(paths) * 255).astype(np.uint8)
    np.testing.assert_array_equal(from_disk, from_cache)
    np.testing.assert_array_equal(one_by_one, from_cache)
    np.testing.assert_array_equal(for_model, from_cache)


@pytest.mark.parametrize("resize", ["stretch", "pad", "crop"])
def test_map_back_puts_a_heatmap_where_the_feature_was(resize: str) -> None:
    width, height = 160, 100
    image = np.zeros((height, width), np.uint8)
    image[40:70, 60:100] = 255  # a bright box near the centre
    prep = Preprocessing((64, 64), resize=resize)
    seen = prep.load(image)[:, :, 0].astype(np.float32) / 255.0
    back = prep.map_back(seen, (width, height))
    assert back.shape == (height, width)
    found = back > 0.5
    truth = image > 0
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou > 0.8, iou


def test_resize_policies() -> None:
    img = Image.new("L", (100, 50), 255)
    stretch = image_to_array(img, (20, 20), resize="stretch")[:, :, 0]
    pad = image_to_array(img, (20, 20), resize="pad")[:, :, 0]
    crop = image_to_array(img, (20, 20), resize="crop")[:, :, 0]
    assert stretch.min() == 255 and crop.min() == 255
    assert pad[0].max() == 0 and pad[10].min() == 255  # black bars above and below
    with pytest.raises(ValueError, match="`resize` argument"):
        image_to_array(img, (20, 20), resize="squash")
