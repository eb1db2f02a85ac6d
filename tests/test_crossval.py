"""Evaluation by source: within each source, and leaving one source out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import DataError, load_dataset
from helpers import two_sources


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return two_sources(tmp_path_factory)


@pytest.mark.slow
def test_within_source_and_leave_one_source_out(
    two: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from covidxray import (
        Classifier,
        build_cnn,
        evaluate_by_source,
        leave_one_source_out,
    )
    from covidxray.cli import main

    hosp = tmp_path / "hosp"
    (hosp / "covid").mkdir(parents=True)
    for path in sorted((two["a"] / "covid").iterdir())[6:10]:
        Image.open(path).rotate(90).save(hosp / "covid" / path.name)
    sources = {**two, "hosp": hosp}
    data = load_dataset(sources, image_size=(48, 48), test_split={"a": 0.3, "b": 0.3})
    clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
    clf.fit(data.subset(["a"]), epochs=1, verbose=0)
    within = evaluate_by_source(clf, data, n_bootstrap=0)
    assert sorted(within.evaluations) == ["a", "b"]  # hosp has no test split
    assert "hosp" in within.skipped
    assert within.counts["b"]["covid"] + within.counts["b"]["non-covid"] == len(
        data.subset(["b"]).split_records("test")
    )
    loso = leave_one_source_out(data, build_cnn, epochs=1, n_bootstrap=0)
    assert loso.trained_on == {
        "a": ["b", "hosp"],
        "b": ["a", "hosp"],
        "hosp": ["a", "b"],
    }
    hosp_ev = loso.evaluations["hosp"]
    assert (
        sum(loso.counts["hosp"].values()) == 4 and "specificity" in hosp_ev.unavailable
    )
    table = loso.to_markdown()
    assert "| hosp | non-covid 0, covid 4 | a, b |" in table and "—" in table
    with pytest.raises(ValueError, match="two or more sources"):
        leave_one_source_out(data.subset(["a"]), build_cnn)
    with pytest.raises(ValueError, match="`shard` argument of as_tf_dataset"):
        data.as_tf_dataset("train", shard=(2, 2))
    with pytest.raises(DataError, match="fewer than the 500 workers"):
        data.as_tf_dataset("train", shard=(0, 500))
    # The command line: several sources, named NAME=PATH or after their folder.
    args = ["crossval", "--by", "source", *(f"{k}={v}" for k, v in sources.items())]
    assert (
        main(
            [*args, "--epochs", "1", "--image-size", "48", "--bootstrap", "0", "--json"]
        )
        == 0
    )
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "leave-one-source-out" and set(report["sources"]) == {
        "a",
        "b",
        "hosp",
    }


@pytest.mark.slow
def test_leave_one_source_out_runs_a_frozen_backbone_once_per_image(
    two: dict[str, Path],
) -> None:
    from covidxray import FeatureCache, build_pretrained, leave_one_source_out

    data = load_dataset(two, image_size=(32, 32), deduplicate=True)
    assert {r.split for r in data.records} <= {"train", "val"}
    cache = FeatureCache()
    result = leave_one_source_out(
        data,
        lambda shape: build_pretrained("mobilenetv2", input_shape=shape, weights=None),
        epochs=1,
        n_bootstrap=0,
        classifier_kwargs={"feature_cache": cache},
    )
    assert sorted(result.evaluations) == ["a", "b"]
    # Each image is computed once: trained on in one run, scored in the other.
    assert cache.computed == len(data.records) == cache.reused


def test_trained_sources_are_read_as_values_and_from_older_files() -> None:
    from covidxray._seen import TrainingRecord
    from covidxray.crossval import _source_names, _trained_sources

    new = {
        "source": "a=/data/x, y, b=/data/b=2",  # a comma and an '=' in paths
        "sources": [{"name": "a", "path": "/data/x, y"}, {"name": "b", "path": None}],
    }
    assert _source_names(new) == ["a", "b"]
    # Files saved before the sources were kept: the display text is parsed.
    assert _source_names({"source": "a=/data/a, b=/data/b"}) == ["a", "b"]
    assert _source_names({"source": "covidx/sirm"}) == ["covidx/sirm"]
    assert _source_names({}) == [""]
    record = TrainingRecord(
        np.zeros((0, 16), np.uint8),
        {"datasets": [new, {"source": "/data/c"}, {"sources": []}]},
    )
    assert _trained_sources(record) == ["a", "b", "/data/c"]
    assert _trained_sources(None) == []
