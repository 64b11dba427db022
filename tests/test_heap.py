"""glibc heap knobs: freed memory really goes back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.reference import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

BURST = textwrap.dedent("""
    import numpy as np
    import heap

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    # 60 MB in blocks below glibc's mmap threshold, so they come from the heap;
    # the last one stays alive and pins the top, as live objects do in the app.
    blocks = [np.ones(100_000 // 8) for _ in range(600)]
    keep = blocks[-1]
    del blocks
    before = rss_mb()
    heap.release_free_memory()
    print(before - rss_mb())
""")


def test_release_free_memory_returns_a_freed_burst() -> None:
    out = subprocess.run([sys.executable, "-c", BURST], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert float(out.stdout) > 40, f"only {out.stdout.strip()} MB returned"
