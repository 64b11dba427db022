"""A real Chromium against a real server: type a review, read the result, press Incorrect.

The app is built by ``make_app`` with CSRF on, served by werkzeug on
127.0.0.1 (port 0) in a thread, and driven with Playwright's sync API from
this module's own fixtures (not pytest-playwright's), using the system
Chromium. Never ``playwright install``: it downloads a browser.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# README's screenshot is this file, taken with RESULTS_SCREENSHOT=docs/results.png.
SCREENSHOT = Path(os.environ.get("RESULTS_SCREENSHOT", "/tmp/results.png"))
POSITIVE_REVIEW = ("A wonderful and brilliant film. The cast was superb, the story moving "
                   "and the ending beautiful. I loved it, and <b>so</b> will you.")


def query(app: Flask, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(Path(app.instance_path) / "reviews.sqlite") as db:
        return db.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install -y chromium (see DESIGN.md)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def live_app(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    """(app with CSRF on, its base URL) served by werkzeug in a thread."""
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-app", daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def browser_page(chromium) -> Iterator:
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    broken: list[str] = []  # stylesheets, icons ... that did not load
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A request the browser itself abandons (the tab's icon still loading when the
    # test moves to the next page) is no broken resource; any other failure is.
    page.on("requestfailed", lambda request: request.failure != "net::ERR_ABORTED"
            and broken.append(f"{request.url}: {request.failure}"))
    page.on("response", lambda response: response.request.resource_type != "document"
            and response.status >= 400 and broken.append(f"{response.url}: {response.status}"))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors in the page: {errors}"
    assert broken == [], f"resources of the page that did not load: {broken}"


def test_review_result_and_incorrect_verdict(live_app: tuple[Flask, str], browser_page) -> None:
    from playwright.sync_api import expect

    app, base = live_app
    page = browser_page
    page.goto(base + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Is this review positive or negative?")
    # The header's icon is an image, not an emoji that machines without an emoji font
    # draw as an empty box; the same file is the tab's icon.
    assert page.evaluate("document.querySelector('header .brand img').naturalWidth") > 0
    assert page.evaluate("document.querySelector('link[rel=icon]').href") == \
        base + "/static/icon.svg"
    page.get_by_label("Your movie review").fill(POSITIVE_REVIEW)
    with page.expect_response(lambda r: r.url == base + "/results") as posted:
        page.get_by_role("button", name="Analyse").click()
    assert posted.value.status == 200

    expect(page.locator("#label")).to_have_text("positive")
    expect(page.locator("#probability")).to_have_text(re.compile(r"^(\d{2}\.\d|> 99\.9)%$"))
    shown = page.locator("#probability").inner_text()
    expect(page.locator("#review-text")).to_have_text(POSITIVE_REVIEW)  # shown as text
    expect(page.locator("#review-text b")).to_have_count(0)  # ... never as markup
    expect(page.locator(".pushes li").first).to_be_visible()
    # Its elements can show before the stylesheet has applied: wait for the page's
    # load event (a fresh-clone CI run once read the style too early).
    page.wait_for_load_state("load")
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") != "none"
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    [(pid, label, probability)] = query(app, "SELECT id, label, probability FROM predictions")
    assert label == 1 and 0.5 <= probability < 1.0
    if shown == "> 99.9%":
        assert probability >= 0.9995
    else:
        assert float(shown.rstrip("%")) == round(probability * 100, 1)
    assert query(app, "SELECT COUNT(*) FROM feedback") == [(0,)]

    page.get_by_role("button", name="Incorrect").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you!")
    assert page.url == base + "/thanks"
    expect(page.locator("#thanks")).to_contain_text("this review is negative")
    assert query(app, "SELECT prediction_id, correct, label, status FROM feedback") == [
        (pid, 0, 0, "accepted")]
    assert app.extensions["learner"].applied_id == 1

    # The result's permalink, reloaded: the verdict shown instead of the buttons.
    page.get_by_role("link", name="The result, with your verdict").click()
    expect(page.locator("#recorded")).to_contain_text("wrong")
    expect(page.get_by_role("button", name="Incorrect")).to_have_count(0)
    [(view_token,)] = query(app, "SELECT view_token FROM predictions")
    assert page.url == f"{base}/results/{view_token}"
    page.reload()
    expect(page.locator("#recorded")).to_contain_text("wrong")

    page.get_by_role("link", name="analyse another review").click()
    expect(page.get_by_label("Your movie review")).to_be_visible()
    assert page.url == base + "/"


def test_too_short_review_shows_the_form_error(live_app: tuple[Flask, str], browser_page) -> None:
    from playwright.sync_api import expect

    app, base = live_app
    page = browser_page
    page.goto(base + "/")
    page.get_by_label("Your movie review").fill("   too short   ")
    with page.expect_response(lambda r: r.url == base + "/results") as posted:
        page.get_by_role("button", name="Analyse").click()
    assert posted.value.status == 400
    error = page.locator("#review-errors")
    expect(error).to_be_visible()
    expect(error).to_have_text("A review must be 15 to 20,000 characters long.")
    expect(page.get_by_label("Your movie review")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Your movie review")).to_have_value("too short")
    assert query(app, "SELECT COUNT(*) FROM predictions") == [(0,)]


def test_the_api_docs_page_works_under_the_content_security_policy(
        live_app: tuple[Flask, str], browser_page) -> None:
    """Swagger UI from the app's own files, started by a script file (no inline script)."""
    from playwright.sync_api import expect

    _, base = live_app
    page = browser_page
    violations: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text
            and violations.append(message.text))
    page.goto(base + "/api/docs")
    expect(page.get_by_text("/api/predict").first).to_be_visible()
    expect(page.get_by_text("/api/feedback").first).to_be_visible()
    page.get_by_text("/api/health").first.click()
    page.get_by_role("button", name="Execute").click()
    live = page.locator(".live-responses-table tbody .response-col_status")
    expect(live.first).to_contain_text("200")
    page.screenshot(path="/tmp/apidocs.png")
    assert violations == [], violations


def test_the_stats_page_draws_its_charts(live_app: tuple[Flask, str], browser_page) -> None:
    app, base = live_app
    client = app.test_client()
    learner = app.extensions["learner"]
    for review in (POSITIVE_REVIEW, POSITIVE_REVIEW + " Twice."):  # two versions, scored
        token = client.post("/api/predict", json={"review": review}).get_json()[
            "prediction_id"]
        client.post("/api/feedback", json={"prediction_id": token, "correct": False})
        learner.checkpoint(force=True)
    page = browser_page
    page.goto(base + "/stats")
    assert page.locator("svg.chart").count() == 1
    box = page.locator("svg.chart").first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    page.screenshot(path="/tmp/stats.png", full_page=True)


def test_the_form_helps_with_javascript_and_works_without(live_app: tuple[Flask, str],
                                                          chromium) -> None:
    from playwright.sync_api import expect

    _, base = live_app
    with_js = chromium.new_context()
    page = with_js.new_page()
    page.goto(base + "/")
    page.get_by_role("link", name="Clearly negative").click()
    box = page.get_by_label("Your movie review")
    expect(box).to_have_value(re.compile("^Dull, far too long"))
    expect(page.locator("#review-count")).to_contain_text("/ 20,000 characters")
    assert page.url == base + "/"  # filled in place
    page.get_by_role("link", name="Clear", exact=True).click()
    expect(box).to_have_value("")
    box.fill("Too short")
    expect(page.locator("#review-count")).to_contain_text("(at least 15)")
    box.fill("A dull and lifeless film, far too long.")
    box.press("Control+Enter")
    expect(page.locator("#label")).to_have_text("negative")
    assert "negative – Movie review sentiment" in page.title()
    with_js.close()

    without_js = chromium.new_context(java_script_enabled=False)
    page = without_js.new_page()
    page.goto(base + "/")
    page.get_by_role("link", name="Clearly positive").click()
    expect(page.get_by_label("Your movie review")).to_have_value(re.compile("^A wonderful"))
    page.get_by_role("button", name="Analyse").click()
    expect(page.locator("#label")).to_have_text("positive")
    without_js.close()


def test_every_page_fits_a_390_px_phone_screen(live_app: tuple[Flask, str], chromium) -> None:
    """No sideways scrolling at 390 px (a phone held upright), the marked review and
    the permalink page included; the explanation's chips and buttons wrap."""
    _, base = live_app
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    too_wide: dict[str, int] = {}

    def check(name: str) -> None:
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 390:
            too_wide[name] = width

    try:
        for path in ("/", "/explore/", "/stats", "/api/docs"):
            page.goto(base + path)
            check(path)
        page.goto(base + "/")
        page.get_by_label("Your movie review").fill(POSITIVE_REVIEW * 3)
        page.get_by_role("button", name="Analyse").click()
        page.wait_for_selector("#review-text mark")
        check("results")
        page.get_by_role("button", name="Incorrect").click()
        page.get_by_role("link", name="The result, with your verdict").click()
        page.wait_for_selector("#recorded")
        check("permalink")
    finally:
        context.close()
    assert too_wide == {}, f"wider than the screen (px): {too_wide}"


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_the_whole_flow_from_an_example_to_the_stats(live_app: tuple[Flask, str], chromium,
                                                     javascript: bool) -> None:
    """Example -> analyse -> marked words -> vote -> verdict shown -> permalink reloaded
    -> the stats page counts the verdict; with JavaScript and without."""
    from playwright.sync_api import expect

    _, base = live_app
    context = chromium.new_context(java_script_enabled=javascript,
                                   viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(base + "/stats")
        expect(page.locator("main")).to_contain_text("0 verdicts")
        page.goto(base + "/")
        page.get_by_role("link", name="Clearly negative").click()  # fills the box either way
        expect(page.get_by_label("Your movie review")).not_to_have_value("")
        page.get_by_role("button", name="Analyse").click()
        expect(page.locator("#label")).to_have_text("negative")
        expect(page.locator("#review-text mark.neg").first).to_be_visible()
        expect(page.locator("#legend")).to_be_visible()
        page.get_by_role("button", name="Incorrect").click()
        expect(page.locator("#thanks")).to_contain_text("this review is positive")
        page.get_by_role("link", name="The result, with your verdict").click()
        expect(page.locator("#recorded")).to_contain_text("wrong")
        page.reload()
        expect(page.locator("#recorded")).to_contain_text("wrong")
        deadline = time.monotonic() + 30  # the stats are cached for a few seconds
        while True:
            page.goto(base + "/stats")
            if "1 verdict (100% of them Incorrect)" in page.locator("main").inner_text() \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        expect(page.locator("main")).to_contain_text("1 verdict (100% of them Incorrect)")
    finally:
        context.close()
