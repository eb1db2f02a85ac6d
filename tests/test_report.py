"""The HTML report (`covidxray.report`, `covidxray report`): its sections,
inline figures, escaping, a dataset seen whole, and its output checks."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import Classifier, DataError, build_cnn, load_dataset, report
from covidxray.cli import EXIT_DATA, main
from covidxray.datasets import make_synthetic

pytestmark = pytest.mark.slow

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic(
        tmp_path_factory.mktemp("report"),
        n_per_class=16,
        test_per_class=8,
        image_size=(48, 48),
    )


@pytest.fixture(scope="module")
def clf(root: Path) -> Classifier:
    data = load_dataset(root, image_size=(48, 48), batch_size=8)
    model = build_cnn((48, 48, 1))
    return Classifier(model, class_names=data.class_names).fit(
        data, epochs=1, verbose=0
    )


@pytest.fixture(scope="module")
def hostile(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # An external set in a folder, and with files, whose names are hostile HTML.
    folder = tmp_path_factory.mktemp("hostile") / HOSTILE
    for cls in ("covid", "normal"):
        shutil.copytree(root / "test" / cls, folder / cls)
    for k, path in enumerate(sorted((folder / "covid").iterdir())):
        path.rename(path.with_name(f"{HOSTILE}{k}.png"))
    return folder


# A `$` in a name is mathtext to matplotlib: `a$^$b` raised in the ROC legend.
DOLLAR = "a$^$b"


@pytest.fixture(scope="module")
def html(
    clf: Classifier, root: Path, hostile: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    out = tmp_path_factory.mktemp("out") / "r.html"
    report(clf, {DOLLAR: root, str(hostile): hostile}, out, n_bootstrap=50, gallery=3)
    return out.read_text(encoding="utf-8")


def _cells(row: str) -> list[str]:
    return [unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]


def test_the_numbers_are_the_evaluations(
    clf: Classifier, root: Path, html: str
) -> None:
    ev = clf.evaluate(root, n_bootstrap=50, seed=0)
    glance = html.split("<h2>At a glance</h2>", 1)[1].split("<h2", 1)[0]
    row = next(r for r in glance.split("<tr>") if r.startswith(f"<td>{DOLLAR}</td>"))
    cells = _cells(row)
    assert int(cells[1]) == len(ev.y_true)
    for key, cell in zip(
        ("roc_auc", "sensitivity", "specificity", "ece"), cells[2:], strict=True
    ):
        lo, hi = ev.ci[key]
        assert cell == f"{ev.metrics[key]:.3f} ({lo:.3f}-{hi:.3f})", key
    section = html.split('id="data-0"', 1)[1].split('id="data-1"', 1)[0]
    table = {
        c[0]: c[1:]
        for c in (_cells(r) for r in section.split("<tr>"))
        if len(c) == 4 and c[0] in ev.metrics
    }
    for key in ("roc_auc", "sensitivity", "specificity", "ece"):
        lo, hi = ev.ci[key]
        assert table[key][:2] == [f"{ev.metrics[key]:.3f}", f"{lo:.3f} - {hi:.3f}"]
    assert f"(95% CI {ev.ci['ece'][0]:.3f} - {ev.ci['ece'][1]:.3f})" in section


def test_hostile_file_names_in_the_gallery_are_escaped(
    clf: Classifier, hostile: Path, tmp_path: Path
) -> None:
    # Above any probability, the threshold makes every covid image a false
    # negative: the gallery shows the hostile file names whatever the model.
    kept = clf.threshold_
    clf.threshold_ = 1.01
    try:
        out = report(
            clf, hostile, tmp_path / "g.html", n_bootstrap=0, gallery=2, lung_test=False
        )
    finally:
        clf.threshold_ = kept
    text = out.read_text(encoding="utf-8")
    gallery = text.split("The most confident mistakes", 1)[1]
    assert "False negatives" in gallery
    shown = re.findall(
        r"&lt;img src=x onerror=&quot;alert\(1\)&quot;&gt;\d+\.png", gallery
    )
    assert len(set(shown)) == 2, shown  # two false negatives (caption, alt)
    assert HOSTILE not in text


def test_the_report_holds_every_section(html: str) -> None:
    assert "Research software, not for clinical use" in html.split("<main>")[0]
    for heading in (
        "The model",
        "What it was trained on",
        "Dataset: ",
        "Classes by source",
        "left out as seen in training",
        "Metrics at the threshold 0.5",
        "ROC and calibration",
        "Expected calibration error (ECE)",
        "The lung test",
        "The most confident mistakes",
        "Warnings",
        "Reporting checklist",
    ):
        assert heading in html, heading
    assert re.search(
        r"<td>roc_auc</td><td class=\"num\">[0-9.]+</td><td>[0-9.]+ - ", html
    )
    assert "not covered" in html and "Patient demographics" in html
    assert '<meta name="viewport"' in html


def test_figures_are_inline_pngs_and_nothing_is_fetched(html: str) -> None:
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) >= 4  # ROC, reliability, per dataset; the gallery
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "PNG" and image.width > 0
    links = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert all(not re.match(r"(https?:)?//", link) for link in links), links
    assert "<script" not in html and "<link" not in html and "@import" not in html


def test_names_from_the_data_are_escaped(html: str) -> None:
    assert HOSTILE not in html
    assert "onerror=" not in html.replace("onerror=&quot;", "")
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_a_dataset_the_model_saw_whole_is_said_not_raised(
    clf: Classifier, root: Path, tmp_path: Path
) -> None:
    out = report(clf, root / "train", tmp_path / "seen.html", lung_test=False)
    text = out.read_text(encoding="utf-8")
    assert "was seen in training or validation" in text
    assert "nothing left to score" in text
    assert "Metrics at the threshold" not in text


def test_an_unwritable_path_fails_before_any_work(
    clf: Classifier, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "r.html"
    # The data do not exist either: the path is checked first.
    with pytest.raises(ValueError, match=re.escape(f"Cannot write '{missing}'")):
        report(clf, tmp_path / "no-data", missing)
    with pytest.raises(ValueError, match="it is a folder"):
        report(clf, tmp_path / "no-data", tmp_path)
    # A missing dataset is found before the first one is read.
    with pytest.raises(DataError, match="no-data' of report does not exist"):
        report(clf, [tmp_path, tmp_path / "no-data"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ValueError, match="not writable"):
            report(clf, tmp_path / "no-data", locked / "r.html")


def test_the_command_writes_one_file_and_checks_out_first(
    clf: Classifier, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = clf.save(tmp_path / "m.keras")
    out = tmp_path / "r.html"
    code = main(
        [
            "report",
            str(model),
            str(root),
            "--out",
            str(out),
            "--bootstrap",
            "20",
            "--no-lung-test",
            "--gallery",
            "0",
        ]
    )
    assert code == 0 and out.is_file()
    assert "No lung test was run" in out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    bad = tmp_path / "missing" / "r.html"
    assert (
        main(["report", str(tmp_path / "no.keras"), str(root), "--out", str(bad)])
        == EXIT_DATA
    )
    assert f"Cannot write '{bad}'" in capsys.readouterr().err


def test_a_multi_class_report_speaks_of_no_threshold() -> None:
    from covidxray import Evaluation
    from covidxray._report_sections import Section, dataset_section, glance

    proba = np.tile([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]], (4, 1))
    ev = Evaluation.from_predictions(
        np.arange(12) % 3, proba, class_names=["a", "b", "c"], n_bootstrap=0
    )
    section = Section(name="three", n_total=12, evaluation=ev)
    text = dataset_section(section, 0, [], False) + glance(
        [section], binary=False, known=False
    )
    assert "threshold" not in text.replace("no training record", "")
    assert "class of highest probability" in text
    assert "never saw" not in text and "no training record" in text
    assert "at the model's threshold, on the images the model never saw" in glance(
        [section]
    )
