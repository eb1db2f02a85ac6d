"""A quiet start: the command prints none of TensorFlow's C++ start-up lines,
`--verbose` keeps them, and errors still show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import covidxray
from covidxray._quiet import Filter, quiet_tensorflow
from covidxray.datasets import make_synthetic

#: The children import the covidxray under test (a checkout, or the installed one).
PACKAGE_PATH = str(Path(covidxray.__file__).resolve().parents[1])
#: What a line of TensorFlow's C++ logging looks like, and its start-up lines.
TF_LINE = re.compile(
    r"^[IWEF]\d{4} |cuInit|cuda drivers|absl::InitializeLog|oneDNN custom operations",
    re.MULTILINE,
)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a Python child with TensorFlow's variables unset, as a new user's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    clean["PYTHONPATH"] = os.pathsep.join(
        filter(None, [PACKAGE_PATH, clean.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **(env or {})},
    )


def tf_lines(result: subprocess.CompletedProcess) -> list[str]:
    text = result.stdout + result.stderr
    return [line for line in text.splitlines() if TF_LINE.search(line)]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_synthetic(
        tmp_path_factory.mktemp("quiet"), n_per_class=1, image_size=(64, 64)
    )
    return next(root.rglob("*.png"))


def test_filter_drops_only_tensorflows_harmless_start_up_lines() -> None:
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR",
        "I0000 00:00:1796137754.002772   26535 port.cc:153] oneDNN custom operations",
        "W0000 00:00:1796137754.0   26535 some.cc:1] a warning",
        "E0000 00:00:1796137756.9   26535 cuda_platform.cc:52] failed call to "
        "cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)",
        "I0000 00:00:1796137754.003322   26535 cudart_stub.cc:31] Could not find "
        "cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1796137756.9   26535 cuda_platform.cc:52] failed call to "
        "cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)",
        "E0000 00:00:1796137756.9   26535 op.cc:1] a real error",
        "F0000 00:00:1796137756.9   26535 op.cc:1] a fatal one",
        "Traceback (most recent call last):",
        "I0000 is not a log line without its place",
    ]
    f = Filter()
    kept = [line for line in lines if f.keep(line)]
    # the first cuInit failure came before any "no driver" line: it is kept
    assert kept == [lines[3], *lines[6:]]
    assert f.dropped == 5


def test_filtered_stderr_passes_every_other_line_in_order() -> None:
    code = textwrap.dedent(
        """
        import os, sys
        from covidxray._quiet import Filter, filtered_stderr
        os.write(2, b"before\\n")
        with filtered_stderr(Filter().keep):
            os.write(2, b"I0000 00:00:1.5   7 a.cc:1] Could not find cuda drivers on your machine\\n")
            print("from Python", file=sys.stderr, flush=True)
            os.write(2, b"E0000 00:00:1.6   7 b.cc:2] failed call to cuInit: x\\n")
            os.write(2, b"E0000 00:00:1.7   7 c.cc:3] real\\nno newline")
        os.write(2, b"\\nafter\\n")
        """
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "before",
        "from Python",
        "E0000 00:00:1.7   7 c.cc:3] real",
        "no newline",
        "after",
    ]


def test_quiet_tensorflow_leaves_a_chosen_level_and_undoes_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    quiet_tensorflow()()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    finders = list(sys.meta_path)
    undo = quiet_tensorflow()
    assert (
        os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
        and len(sys.meta_path) == len(finders) + 1
    )
    undo()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and sys.meta_path == finders


def test_help_and_a_command_that_loads_tensorflow_print_no_tensorflow_line(
    image: Path, tmp_path: Path
) -> None:
    help_run = run("-m", "covidxray", "--help")
    assert help_run.returncode == 0 and "segment" in help_run.stdout
    assert tf_lines(help_run) == []
    quiet = run("-m", "covidxray", "segment", str(image), "--out", str(tmp_path))
    assert quiet.returncode == 0, quiet.stderr
    assert (tmp_path / f"{image.stem}.png").is_file()
    assert tf_lines(quiet) == []


def test_verbose_keeps_tensorflows_lines_and_errors_still_show(
    image: Path, tmp_path: Path
) -> None:
    reference = run("-c", "import tensorflow as tf; tf.config.list_physical_devices()")
    loud = run(
        "-m", "covidxray", "--verbose", "segment", str(image), "--out", str(tmp_path)
    )
    assert loud.returncode == 0, loud.stderr
    expected = {line.split("] ", 1)[-1] for line in tf_lines(reference)}
    assert expected <= {line.split("] ", 1)[-1] for line in tf_lines(loud)}
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    failed = run("-m", "covidxray", "segment", str(broken), "--out", str(tmp_path))
    assert failed.returncode == 1
    assert "covidxray segment: error:" in failed.stderr and "broken.png" in (
        failed.stderr
    )
    assert tf_lines(failed) == []
