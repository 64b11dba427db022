"""/explore/: the exploration report as a page, its plots, and what a missing report says."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from tests.fakes import PNG_1x1


def report_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "explore"
    folder.mkdir()
    (folder / "report.md").write_text(
        "# Data exploration\n\n| split | positive |\n|---|---|\n| train | 12,500 |\n\n"
        "![Review length per class](lengths.png)\n\n<script>alert(1)</script>\n")
    (folder / "lengths.png").write_bytes(PNG_1x1)
    (folder / "figures.json").write_text("{}")
    return folder


def test_the_report_renders_with_its_tables_and_plots(make_app, tmp_path: Path) -> None:
    app: Flask = make_app(EXPLORE_DIR=report_folder(tmp_path))
    client = app.test_client()
    page = client.get("/explore/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<h1>Data exploration</h1>" in html and "<td>12,500</td>" in html
    assert '<img src="lengths.png" alt="Review length per class"' in html
    assert "<script>alert" not in html  # the report's raw HTML is escaped
    plot = client.get("/explore/lengths.png")
    assert plot.status_code == 200 and plot.mimetype == "image/png"
    assert plot.data == PNG_1x1


def test_only_the_plots_are_served_from_the_report_folder(make_app, tmp_path: Path) -> None:
    client = make_app(EXPLORE_DIR=report_folder(tmp_path)).test_client()
    for path in ("/explore/figures.json", "/explore/report.md", "/explore/missing.png",
                 "/explore/..%2Fsecret.png", "/explore/../../etc/passwd"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Traceback" not in response.get_data(as_text=True)


def test_a_missing_report_says_how_to_make_one(make_app, tmp_path: Path) -> None:
    client = make_app(EXPLORE_DIR=tmp_path / "nothing").test_client()
    response = client.get("/explore/")
    assert response.status_code == 404
    assert "python -m train.explore" in response.get_data(as_text=True)


def test_every_page_links_to_the_data(make_app, tmp_path: Path) -> None:
    client = make_app(EXPLORE_DIR=report_folder(tmp_path), WTF_CSRF_ENABLED=False).test_client()
    pages = [client.get("/"), client.get("/explore/"), client.get("/nope"),
             client.post("/results", data={"review": "A wonderful, brilliant, moving film."})]
    for page in pages:
        assert 'href="/explore/"' in page.get_data(as_text=True), page.status


def test_the_committed_report_is_served(make_app) -> None:
    client = make_app().test_client()  # the default folder: reports/explore/
    html = client.get("/explore/").get_data(as_text=True)
    assert "Vocabulary limit" in html
    assert client.get("/explore/coverage.png").status_code == 200
