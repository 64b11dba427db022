"""The crash and load proof of bench/crash.py, run in full (60 s, 5 SIGKILLs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_kill_9_under_load_loses_and_double_counts_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.crash", "--seconds", "60", "--restarts", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines()
                 if line.startswith(("restarts", "5xx")))
    assert lines == {"restarts": "5", "5xx": "0"}
    assert "acknowledged but missing         0" in result.stdout
    assert "live digest == rebuilt digest    True" in result.stdout
    assert result.stdout.rstrip().endswith("PASS")
