"""The plots render to valid PNG files of the expected size (Agg backend)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from covidxray import Evaluation
from covidxray.plots import (
    plot_calibration,
    plot_confusion_matrix,
    plot_gradcam_grid,
    plot_history,
    plot_roc,
)


@pytest.fixture
def evaluation() -> Evaluation:
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    return Evaluation.from_predictions(
        y,
        np.clip(y * 0.5 + rng.random(40) * 0.5, 0, 1),
        class_names=["non", "covid"],
        n_bootstrap=0,
    )


def check_png(path: Path, size: tuple[int, int]) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size == size


def test_plots_write_pngs(tmp_path: Path, evaluation: Evaluation) -> None:
    plot_history(
        {"loss": [0.7, 0.5, 0.4], "val_loss": [0.7, 0.6, 0.6], "auc": [0.6, 0.8, 0.9]},
        path=tmp_path / "history.png",
    )
    check_png(tmp_path / "history.png", (800, 320))
    fig = plot_roc(
        {"a": evaluation, "b": (evaluation.y_true, evaluation.y_score[:, 1] ** 2)},
        path=tmp_path / "roc.png",
    )
    check_png(tmp_path / "roc.png", (500, 450))
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    plot_confusion_matrix(evaluation, path=tmp_path / "cm.png")
    check_png(tmp_path / "cm.png", (420, 380))
    plot_gradcam_grid(
        np.zeros((5, 16, 16, 1)),
        np.ones((5, 16, 16)),
        [str(i) for i in range(5)],
        path=tmp_path / "grid.png",
    )
    check_png(tmp_path / "grid.png", (1200, 600))


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "covidxray\[plots\]"'):
        plot_history({"loss": [1.0]})


def test_reliability_diagram_has_the_diagonal_bins_and_ece(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    from covidxray.plots import plot_calibration

    path = tmp_path / "calibration.png"
    fig = plot_calibration(evaluation, path=path, title="seed")
    ax, hist = fig.axes
    assert ax.get_title() == f"seed (ECE {evaluation.metrics['ece']:.3f})"
    diagonal = ax.get_lines()[0].get_xydata()
    assert diagonal.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    labels = [t.get_text() for t in ax.texts]
    assert labels and labels[0] == str(evaluation.reliability.count[0])
    assert set(labels) <= {str(c) for c in evaluation.reliability.count}
    assert sum(p.get_height() for p in hist.patches) == 40
    assert Image.open(path).format == "PNG"
    # points alone: no histogram
    assert len(plot_calibration(evaluation.reliability).axes) == 1
    with pytest.raises(TypeError, match="Evaluation or a Reliability"):
        plot_calibration({"x": 1})  # type: ignore[arg-type]


def test_a_dollar_in_a_name_is_drawn_not_parsed_as_mathtext(
    evaluation: Evaluation,
) -> None:
    # `a$^$b` is mathtext with a bare superscript: it raised in savefig.
    name = "a$^$b"
    for fig in (
        plot_roc({name: evaluation}),
        plot_calibration(evaluation, title=name),
        plot_history({name: [0.7, 0.5]}),
        plot_gradcam_grid(np.zeros((1, 16, 16, 1)), np.ones((1, 16, 16)), [name]),
    ):
        fig.savefig(io.BytesIO(), format="png")
    text = plot_roc({name: evaluation}).axes[0].get_legend().get_texts()[0]
    assert text.get_text().startswith(r"a\$^\$b (AUC")
