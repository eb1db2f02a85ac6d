"""Findings to classes: the binary rule, class hierarchies, and what is dropped."""

from __future__ import annotations

import pytest

from covidxray import DataError
from covidxray.data.labels import canon, is_covid_name, make_label_map


def test_two_plain_findings_keep_their_names_positive_last() -> None:
    m = make_label_map(["Normal", "COVID-19", "Normal"])
    assert m.class_names == ("Normal", "COVID-19") and m.positive_class == "COVID-19"
    assert m.mapping == {"COVID-19": "COVID-19", "Normal": "Normal"}


def test_several_negatives_become_non_positive() -> None:
    m = make_label_map(["covid", "normal", "pneumonia"])
    assert m.class_names == ("non-covid", "covid")
    assert m.mapping == {
        "covid": "covid",
        "normal": "non-covid",
        "pneumonia": "non-covid",
    }


def test_keep_names_false_renames_even_two_folders() -> None:
    m = make_label_map(["covid", "normal"], keep_names=False)
    assert m.class_names == ("non-covid", "covid")


def test_positive_class_is_matched_by_alias_and_checked() -> None:
    m = make_label_map(["SARS-CoV-2", "healthy"], positive_class="healthy")
    assert m.positive_class == "healthy" and m.class_names[1] == "healthy"
    with pytest.raises(DataError, match="must match one of the findings"):
        make_label_map(["covid", "normal"], positive_class="tuberculosis")


def test_one_side_only_needs_single_class() -> None:
    with pytest.raises(DataError, match="need a positive and a negative class"):
        make_label_map(["covid"])
    m = make_label_map(["covid"], single_class=True)
    assert m.class_names == ("non-covid", "covid") and m.mapping == {"covid": "covid"}


def test_classes_match_the_most_specific_segment_and_drop_the_rest() -> None:
    findings = ["Pneumonia/Viral/COVID-19", "Pneumonia/Bacterial/Strep", "Fracture"]
    m = make_label_map(findings, classes=["pneumonia", "COVID-19"])
    assert m.mapping["Pneumonia/Viral/COVID-19"] == "COVID-19"
    assert m.mapping["Pneumonia/Bacterial/Strep"] == "pneumonia"
    assert m.mapping["Fracture"] is None  # load_dataset drops it
    by_dict = make_label_map(findings, classes={"other": ["Fracture"], "covid": []})
    assert by_dict.mapping["Fracture"] == "other"
    assert by_dict.mapping["Pneumonia/Viral/COVID-19"] == "covid"


def test_bad_classes_are_named() -> None:
    with pytest.raises(TypeError, match="received the string|Received the string"):
        make_label_map(["a", "b"], classes="covid")
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        make_label_map(["a", "b"], classes=["a"])
    with pytest.raises(DataError, match="no labelled images"):
        make_label_map([])


def test_names_are_compared_canonically() -> None:
    assert canon("COVID-19") == canon("covid19") == "covid19"
    assert is_covid_name("nCoV pneumonia") and not is_covid_name("SARS")
