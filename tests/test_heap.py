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
    from sentiment import memory as heap

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


FREED_AT_ONCE = textwrap.dedent("""
    import sys
    import numpy as np
    from sentiment import memory as heap

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    if sys.argv[1] == "configured":
        heap.configure()
    # Freeing one 16 MB array lifts glibc's own threshold to 16 MB, so the
    # 1 MB blocks that follow would come from the heap and stay there.
    big = np.ones(16 * 2**20 // 8)
    del big
    blocks = [np.ones(2**20 // 8) for _ in range(60)]
    keep = blocks[-1]
    before = rss_mb()
    del blocks
    print(before - rss_mb())
""")


def test_configured_allocator_returns_megabyte_arrays_as_soon_as_they_are_freed() -> None:
    def returned(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", FREED_AT_ONCE, mode], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        return float(out.stdout)

    assert returned("configured") > 50
    assert returned("default") < 10  # what the setting is for
