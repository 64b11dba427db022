"""``python -m bench.serving``: a short run end to end, with figures that add up.

The README's serving table comes from this script, so it must keep running
against the app as it is, and what it prints must be physically possible.
"""

from __future__ import annotations

import http.client
import json
import platform
from pathlib import Path

import pytest
import scipy
import sklearn

from bench import serving
from tests.tiny_aclimdb import TrainedRun

pytest_plugins = ["tests.train_fixtures"]


def test_cpu_bound_is_cores_over_cpu_per_request() -> None:
    row = {"server_cpu_ms": 1.5, "client_cpu_ms": 0.5}
    assert serving.cpu_bound_per_s(row, cores=2) == pytest.approx(1000.0)
    assert serving.cpu_bound_per_s(row, cores=1) == pytest.approx(500.0)


@pytest.mark.slow
def test_short_run_measures_the_app_and_the_load_generator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_training(*_: object) -> Path:
        raise AssertionError("--no-baseline must not train the book preset")

    monkeypatch.setattr(serving, "train_book", no_training)
    monkeypatch.delenv("ACLIMDB_ARCHIVE", raising=False)  # and needs no archive
    report = tmp_path / "serving.json"
    status = serving.main(["--seconds", "1", "--figures", "predict", "page", "verdict",
                           "--workers", "1", "--startup-verdicts", "0", "--no-baseline",
                           "--json", str(report)])
    assert status == 0
    data = json.loads(report.read_text())
    assert data["tutorial"] is None
    [run] = data["runs"]
    rows = {row["name"]: row for row in run["load"]}
    assert set(rows) == {"POST /api/predict", "HTML results page",
                         "POST /api/feedback (verdict)"}
    for row in rows.values():
        assert row["requests"] > 0 and row["errors"] == 0
        assert row["server_cpu_ms"] > 0 and row["client_cpu_ms"] > 0
        # Both CPU times are taken over a window a little wider than the
        # load itself, so the bound may come out slightly low, never far.
        assert row["per_s"] <= 1.2 * serving.cpu_bound_per_s(row)
    printed = capsys.readouterr().out
    assert "gen ms" in printed and "cores serve at most" in printed
    # Without a baseline measured in this run, no ratio at all.
    assert printed.count("not measured in this run") == 1
    assert "the tutorial's" not in printed.replace("the tutorial's app: not measured", "")
    assert "x the" not in printed
    # Figures move with the library releases: each run names the ones it measured.
    assert data["versions"]["scikit-learn"] == sklearn.__version__
    assert data["versions"]["scipy"] == scipy.__version__
    assert printed.startswith(f"measured with python {platform.python_version()}, "
                              f"scikit-learn {sklearn.__version__}, scipy {scipy.__version__}")


@pytest.mark.slow
def test_the_tutorial_is_measured_in_the_same_run_and_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trained: dict[str, TrainedRun]
) -> None:
    report = tmp_path / "serving.json"
    status = serving.main(["--seconds", "1", "--workers", "1", "--startup-verdicts", "50",
                           "--tutorial-model", str(trained["book"].out),
                           "--figures", "page", "verdict", "--json", str(report)])
    assert status == 0
    data = json.loads(report.read_text())
    tutorial, [ours] = data["tutorial"], data["runs"]
    theirs = {row["name"]: row for row in tutorial["load"]}
    assert set(theirs) == {"HTML results page", "POST /thanks (verdict)"}
    for row in theirs.values():
        assert row["requests"] > 0 and row["errors"] == 0 and row["server_cpu_ms"] > 0
    assert (tutorial["workers"], tutorial["threads"]) == (1, 4)
    assert tutorial["memory_after_load"]["rss_mb"] > 0
    assert tutorial["memory_after_load"]["processes"] == 1
    assert tutorial["startup"]["verdicts"] == 50 and tutorial["startup"]["startup_s"] > 0

    printed = capsys.readouterr().out
    header = "== the tutorial's app (1 process, 4 threads), measured in this run =="
    assert printed.index(header) < printed.index("== 1 worker process")
    page, their_page = ({r["name"]: r for r in ours["load"]}["HTML results page"],
                        theirs["HTML results page"])
    assert (f"results pages/s {page['per_s']:.0f}: {page['per_s'] / their_page['per_s']:.2f}x "
            f"the tutorial's {their_page['per_s']:.0f} in this run") in printed
    verdicts = theirs["POST /thanks (verdict)"]
    assert f"the tutorial's {verdicts['per_s']:.0f} in this run (target >= " in printed
    assert f"the tutorial's {tutorial['startup']['startup_s']:.2f} s in this run" in printed


def test_without_a_model_or_an_archive_it_stops_before_measuring(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACLIMDB_ARCHIVE", raising=False)
    monkeypatch.setattr(serving, "resolve_archive", lambda *_: pytest.fail("no download"))
    assert serving.main(["--seconds", "1", "--figures", "page"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert "ACLIMDB_ARCHIVE" in line and "--tutorial-model" in line and "--no-baseline" in line


def test_a_response_is_taken_whole_once_it_has_all_arrived() -> None:
    response = (b"HTTP/1.1 201 Created\r\nCONTENT-LENGTH: 5\r\nX: y\r\n\r\nhello"
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
    buffer = bytearray()
    statuses = []
    for byte in range(len(response)):  # as if it came one byte at a time
        buffer += response[byte:byte + 1]
        if (status := serving.take_response(buffer)) is not None:
            statuses.append((status, byte))
    first_end = response.index(b"hello") + 4
    assert statuses == [(201, first_end), (429, len(response) - 1)]
    assert buffer == b""


def test_http_request_carries_its_length_type_and_cookie() -> None:
    request = serving.http_request("POST", "/api/predict", b'{"review": "x"}', cookie="s=1")
    head, body = request.split(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"POST /api/predict HTTP/1.1", b"Host: 127.0.0.1",
                                    b"Content-Length: 15", b"Content-Type: application/json",
                                    b"Cookie: s=1"]
    assert body == b'{"review": "x"}'


@pytest.mark.slow
@pytest.mark.parametrize("rate_limits", [False, True])
def test_rate_limits_are_off_or_lifted_far_above_the_load(tmp_path: Path,
                                                          rate_limits: bool) -> None:
    server = serving.Server(tmp_path, rate_limits=rate_limits)
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/api/predict", body=json.dumps({"review": serving.REVIEW}),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        limit = response.getheader("X-RateLimit-Limit")
    finally:
        server.stop()
    if rate_limits:  # checked on every request, as in production, but never reached
        assert limit is not None and int(limit) >= 1_000_000
    else:
        assert limit is None


def test_the_floor_app_echoes_the_tutorials_form_escaped() -> None:
    from bench.floor_app import create_app

    client = create_app().test_client()
    page = client.post("/results", data={"moviereview": "A <b>fine</b> film"})
    assert page.status_code == 200
    assert b"18 characters" in page.data and b"A &lt;b&gt;fine&lt;/b&gt; film" in page.data
    assert client.get("/").status_code == 200  # what the benchmark waits for


@pytest.mark.slow
def test_the_floor_is_measured_under_the_pages_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "serving.json"
    status = serving.main(["--seconds", "1", "--figures", "page", "--workers", "1",
                           "--startup-verdicts", "0", "--no-baseline", "--floor",
                           "--json", str(report)])
    assert status == 0
    [row] = json.loads(report.read_text())["floor"]["load"]
    assert row["name"] == "empty Flask page"
    assert row["requests"] > 0 and row["errors"] == 0 and row["server_cpu_ms"] > 0
    assert (f"{row['server_cpu_ms']:.2f} ms of CPU per page, {row['per_s']:.0f} pages/s"
            in capsys.readouterr().out)
