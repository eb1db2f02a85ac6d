"""The built docs site, read in a real headless browser at 1280 px.

Skipped where no Chromium is installed (`apt-get install chromium` brings
it). It builds the site with `mkdocs build --strict`, then asks the browser,
at a 1280-px-wide window, whether any table of the comparison and external
validation pages scrolls sideways, and whether an API page shows its examples
as code rather than as quoted text.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BROWSER_TEST, browser_probe

ROOT = Path(__file__).resolve().parents[1]

pytestmark = BROWSER_TEST

PROBE = """
<script>
window.addEventListener("load", () => {
  // Material wraps each table in a horizontally scrolling box.
  const wide = [...document.querySelectorAll("article table")].filter((t) => {
    const box = t.closest(".md-typeset__scrollwrap") || t.parentElement;
    return box.scrollWidth > box.clientWidth + 1;
  });
  const quoted = [...document.querySelectorAll("article blockquote")].filter(
    (q) => q.textContent.includes(">>>"));
  const code = [...document.querySelectorAll("article pre code")].filter(
    (c) => c.textContent.includes(">>>"));
  document.body.setAttribute("data-probe",
    `tables=${document.querySelectorAll("article table").length};` +
    `wide=${wide.length};quoted=${quoted.length};code=${code.length}`);
});
</script>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return out


def probe(page: Path) -> dict[str, int]:
    """Layout facts the browser measured on `page` at 1280 px."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    return browser_probe(probed)


@pytest.mark.parametrize("page", ["comparison", "external-validation", "index"])
def test_tables_fit_a_1280_px_window(site: Path, page: Path) -> None:
    path = site / "index.html" if page == "index" else site / page / "index.html"
    facts = probe(path)
    assert facts["tables"] >= 2 and facts["wide"] == 0, facts


def test_api_examples_render_as_code(site: Path) -> None:
    facts = probe(site / "api" / "Classifier" / "index.html")
    assert facts["code"] >= 1 and facts["quoted"] == 0, facts
