"""axe-core in Chromium finds no accessibility violation on any page, in either theme.

axe-core is pinned and installed by ``make axe`` (npm) into .tools/; it is
injected through the DevTools protocol (the pages' CSP allows no inline script).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.fakes import PNG_1x1

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
VIOLATIONS = ("axe.run().then(r => r.violations.map(v => v.id + ' (' + v.impact + '): '"
              " + v.nodes.map(n => n.target.join(' ')).join(', ')))")


@pytest.fixture
def served(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[str]:
    report = tmp_path / "explore"
    report.mkdir()
    (report / "report.md").write_text("# The data\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                      "![A plot](plot.png)\n")
    (report / "plot.png").write_bytes(PNG_1x1)
    app = make_app(EXPLORE_DIR=report)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_page_has_an_accessibility_violation(served: str, scheme: str) -> None:
    if not CHROMIUM.is_file() or not AXE.is_file():
        pytest.skip("needs /usr/bin/chromium and axe-core: make browser axe")
    from playwright.sync_api import sync_playwright

    axe = AXE.read_text()
    found: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_context(color_scheme=scheme).new_page()

        def check(name: str) -> None:
            page.evaluate(axe)
            found[name] = page.evaluate(VIOLATIONS)

        for path in ("/", "/?example=mixed", "/explore/", "/stats", "/no/such/page"):
            page.goto(served + path)
            check(path)
        page.goto(served + "/?example=negative")
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_selector("#label")
        check("results")
        page.get_by_role("button", name="Incorrect").click()
        page.wait_for_selector("#thanks")
        check("thanks")
        page.get_by_role("link", name="The result, with your verdict").click()
        page.wait_for_selector("#recorded")
        check("a result's permalink, with its verdict")
        page.goto(served + "/stats")
        check("/stats with a verdict")
        browser.close()
    assert {name: v for name, v in found.items() if v} == {}
