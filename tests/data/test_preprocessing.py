"""Tests of Preprocessing: one way to read an image, wherever it enters."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import (
    Classifier,
    CovidXrayWarning,
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


# ---------------------------------------------------------------- lungs


def lung_picture() -> tuple[Image.Image, np.ndarray]:
    """A 100 x 80 image: bright lungs (a known mask) on a mid-grey body, with
    a white marker in the top-left corner, outside the lungs."""
    arr = np.full((80, 100), 100, np.uint8)
    mask = np.zeros((80, 100), bool)
    mask[20:60, 20:45] = mask[20:60, 55:80] = True
    arr[mask] = 200
    arr[:8, :8] = 255
    return Image.fromarray(arr), mask


def test_lungs_crop_crops_to_the_lungs_and_mask_blanks_what_is_outside() -> None:
    img, mask = lung_picture()
    plain = Preprocessing((40, 40)).to_array(img)
    cropped = Preprocessing((40, 40), lungs="crop").to_array(img, lungs=mask)
    masked = Preprocessing((40, 40), lungs="mask").to_array(img, lungs=mask)
    # The box is the lungs' (rows 20-60, columns 20-80) plus 8% of it a side.
    assert Preprocessing(lungs="crop").seen_box(img, lungs=mask) == (15, 17, 85, 63)
    assert int(plain[0, 0, 0]) == 255  # the marker is seen without lungs=
    assert int(cropped[0, 0, 0]) == 100 and not np.array_equal(cropped, plain)
    # Outside the (grown) lungs everything is 0; the lungs are kept.
    assert int(masked[0, 0, 0]) == 0 and int(masked[20, 10, 0]) == 200
    assert int(masked[20, 20, 0]) == 0  # between the lungs: the body, blanked
    assert np.array_equal(masked[masked > 0], cropped[masked > 0])


def test_a_lung_preprocessing_needs_the_mask_and_keeps_an_image_with_none_whole() -> (
    None
):
    img, mask = lung_picture()
    prep = Preprocessing((40, 40), lungs="crop")
    with pytest.raises(ValueError, match="needs the lung mask of 'the image'"):
        prep.to_array(img)
    with pytest.raises(ValueError, match="`lungs` mask of 'the image' has shape"):
        prep.to_array(img, lungs=mask[:10])
    empty = np.zeros_like(mask)
    assert prep.seen_box(img, lungs=empty) is None
    assert np.array_equal(
        prep.to_array(img, lungs=empty), Preprocessing((40, 40)).to_array(img)
    )
    masked = Preprocessing((40, 40), lungs="mask")
    assert int(masked.to_array(img, lungs=empty).max()) == 255  # not blanked


def test_the_lung_crop_is_undone_by_map_back_and_the_mask_follows_it() -> None:
    img, mask = lung_picture()
    prep = Preprocessing((40, 40), lungs="crop")
    box = prep.seen_box(img, lungs=mask)
    heat = np.ones((40, 40), np.float32)
    back = prep.map_back(heat, img.size, box)
    assert back.shape == (80, 100)
    assert back[0, 0] == 0.0 and back[40, 50] == 1.0  # outside the crop: unseen
    seen = prep.mask_array(img, mask)
    assert seen.shape == (40, 40) and 0.4 < seen.mean() < 0.9
    assert not seen[:, 18:22].any()  # the gap between the lungs, after the crop


def test_lungs_round_trips_and_an_old_dict_reads_as_none() -> None:
    prep = Preprocessing((32, 32), lungs="mask")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert "lungs" not in Preprocessing((32, 32)).to_dict()  # old caches match
    old = {"image_size": [32, 32], "color_mode": "grayscale", "resize": "stretch"}
    assert Preprocessing.from_dict(old).lungs == "none"
    with pytest.raises(ValueError, match="`lungs` argument of Preprocessing"):
        Preprocessing(lungs="yes")


def test_load_finds_the_lungs_and_warns_by_name_where_there_are_none(
    fake_lungs, tmp_path: Path
) -> None:
    img, _ = lung_picture()
    good, bad = tmp_path / "a.png", tmp_path / "nolung.png"
    img.save(good)
    img.save(bad)
    prep = Preprocessing((40, 40), lungs="crop")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = prep.load(good)
    assert fake_lungs.calls == 1 and int(one[0, 0, 0]) == 100  # cropped
    with pytest.warns(CovidXrayWarning, match=r"nolung\.png'.*no lung found") as got:
        both = prep.load_many([good, bad])
    assert int(both[1, 0, 0, 0]) == 255  # no lungs: read whole, said so
    assert got[0].filename == __file__  # the warning points at this call
    # Reading files never depends on how they fall into batches: a batch of
    # lungless files is warned about too, not refused (only a scan refuses).
    with pytest.warns(CovidXrayWarning, match="2 of 2 images"):
        assert prep.load_many([bad, bad]).shape == (2, 40, 40, 1)


def test_mask_never_blanks_a_whole_image_whose_lungs_were_trimmed_away() -> None:
    img, _ = lung_picture()
    corner = np.zeros((80, 100), bool)
    corner[:3, :3] = True  # "lungs" only where trim cuts
    out = Preprocessing((40, 40), lungs="mask", trim=0.2).to_array(img, lungs=corner)
    assert int(out.max()) > 0


def test_a_classifier_reads_files_with_all_of_its_datasets_preprocessing(
    awkward_files: Path, fake_lungs
) -> None:
    # Before, a fitted classifier kept only the size, colour and resize: a
    # trimmed, equalised or lung-cropped dataset's model read files unchanged.
    options = dict(trim=0.1, equalize="clahe", window="percentile", lungs="mask")
    data = load_dataset(
        awkward_files,
        image_size=(48, 40),
        deduplicate=False,
        validation_split=0.0,
        batch_size=4,
        **options,
    )
    clf = Classifier(build_cnn((48, 40, 1)), class_names=data.class_names)
    clf.fit(data, epochs=1, verbose=0)
    assert clf.preprocessing_ == data.preprocessing
    assert {k: getattr(clf.preprocessing_, k) for k in options} == options
    paths = [r.path for r in data.split_records("train")]
    for_model = np.round(clf.preprocess(paths) * 255).astype(np.uint8)
    np.testing.assert_array_equal(for_model, data.images("train"))


def test_evaluate_reads_a_folder_with_the_models_whole_preprocessing(
    awkward_files: Path, fake_lungs
) -> None:
    data = load_dataset(
        awkward_files,
        image_size=(48, 40),
        deduplicate=False,
        validation_split=0.0,
        trim=0.1,
        lungs="crop",
    )
    clf = Classifier(build_cnn((48, 40, 1)), class_names=data.class_names)
    clf.fit(data, epochs=1, verbose=0)
    again = clf.read_dataset(awkward_files)  # what evaluate and lung_test read
    assert again.preprocessing == clf.preprocessing_
    assert clf.segmenter_ == data.lung_segmenter == fake_lungs().info()
