"""Records and entries: what is known of an image before its pixels are loaded."""

from __future__ import annotations

import json

from covidxray.data.records import Entry, Record, count_by_source


def test_a_record_is_a_plain_json_value() -> None:
    r = Record("a.png", "covid", "train", "p1", "a", "COVID-19", "ab", "cd", "ef",
               4, 3, "L", "PNG", 10)  # fmt: skip
    assert (
        r.bit_depth == 8 and json.loads(json.dumps(r.to_dict()))["patient_id"] == "p1"
    )
    assert Entry("a.png", "covid").split is None


def test_count_by_source_keeps_first_seen_order_and_every_class() -> None:
    recs = [
        Record(f"{i}", label, "train", None, src, "", "", "", "", 1, 1, "L", "PNG", 1)
        for i, (src, label) in enumerate([("b", "covid"), ("a", "non"), ("b", "non")])
    ]
    assert count_by_source(recs, ("non", "covid")) == {
        "b": {"non": 1, "covid": 1},
        "a": {"non": 1, "covid": 0},
    }
