"""The HTML report read in a real headless browser, at 1280 px and at a
phone's 390 px.

Skipped where no Chromium is installed (`.ci/run` installs it). A copy of
the report gets a probe script (the report itself has none) and is shown in
an iframe of the width under test (headless Chromium's window is at least
500 px wide). The probe measures, and posts to the page around it, which
writes it into the DOM that `--dump-dom` prints: how many images there are
and how many failed to load (`naturalWidth` 0), how many resources the
report fetched (`performance.getEntriesByType("resource")`: data URIs are
not fetched, so any entry is a request for a file or a network address), and
whether the report is wider than its frame.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from covidxray import Classifier, build_cnn, load_dataset, report
from covidxray.datasets import make_synthetic
from helpers import BROWSER_TEST, browser_probe

pytestmark = BROWSER_TEST

PROBE = """
<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0);
  const fetched = performance.getEntriesByType("resource").map((e) => e.name);
  const root = document.documentElement;
  parent.postMessage(
    `images=${images.length};broken=${broken.length};` +
    `fetched=${fetched.length};` +
    `overflow=${Math.max(0, root.scrollWidth - root.clientWidth)};` +
    `width=${root.clientWidth}`, "*");
});
</script>
"""

FRAME = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="probed.html" style="width:{width}px;height:900px;border:0"></iframe>
<script>
window.addEventListener("message", (e) => {{
  document.body.setAttribute("data-probe", e.data);
}});
</script></body></html>
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_synthetic(
        tmp_path_factory.mktemp("browser"),
        n_per_class=16,
        test_per_class=8,
        image_size=(48, 48),
    )
    data = load_dataset(root, image_size=(48, 48), batch_size=8)
    clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
    clf.fit(data, epochs=1, verbose=0)
    out = report(
        clf,
        {"a very long dataset name " * 6: root},
        tmp_path_factory.mktemp("page") / "r.html",
        n_bootstrap=20,
        lung_test=False,
    )
    probed = out.with_name("probed.html")
    probed.write_text(
        out.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
        encoding="utf-8",
    )
    return probed


def probe(page: Path, width: int) -> dict[str, int]:
    frame = page.with_name(f"frame{width}.html")
    frame.write_text(FRAME.format(width=width), encoding="utf-8")
    # Chromium opens no window under 500 px: the page is framed at `width`.
    return browser_probe(frame, max(width, 1280), scrollbars=False)


@pytest.mark.parametrize("width", [1280, 390])
def test_figures_load_nothing_is_fetched_and_the_page_fits(
    page: Path, width: int
) -> None:
    facts = probe(page, width)
    assert facts["images"] >= 3 and facts["broken"] == 0, facts
    assert facts["fetched"] == 0, facts
    assert facts["width"] <= width and facts["overflow"] == 0, facts


def test_the_probe_sees_a_wide_page_a_broken_image_and_a_request(
    tmp_path: Path,
) -> None:
    # The control: what the probe must catch when a report gets it wrong.
    bad = tmp_path / "probed.html"
    bad.write_text(
        '<html><body><div style="width:900px">wide</div>'
        '<img src="missing.png"><img src="http://127.0.0.1:9/x.png">'
        + PROBE
        + "</body></html>",
        encoding="utf-8",
    )
    facts = probe(bad, 390)
    assert facts["broken"] == 2 and facts["fetched"] >= 1, facts
    assert facts["overflow"] > 0, facts
