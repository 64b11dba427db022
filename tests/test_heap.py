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
    # Freeing one 24 MB array lifts glibc's own threshold to 24 MB, so the
    # 8 MB blocks that follow would come from the heap and stay there.
    big = np.ones(24 * 2**20 // 8)
    del big
    blocks = [np.ones(8 * 2**20 // 8) for _ in range(8)]
    keep = blocks[-1]
    before = rss_mb()
    del blocks
    print(before - rss_mb())
""")


def run(script: str, mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", script, mode], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_configured_allocator_returns_large_arrays_as_soon_as_they_are_freed() -> None:
    assert run(FREED_AT_ONCE, "configured") > 50
    assert run(FREED_AT_ONCE, "default") < 10  # what the setting is for


# A request's arrays of a few hundred KB to a few MB, each freed before the
# next (a batch's chunks), twice: the second time, the pages the first one used
# should be reused, not faulted in afresh.
BURST_AGAIN = textwrap.dedent("""
    import resource
    import sys
    import numpy as np
    from sentiment import memory as heap

    if sys.argv[1] == "configured":
        heap.configure()
    elif sys.argv[1] == "small-threshold":
        heap.configure(mmap_threshold=256 * 1024)

    def burst():
        for size in (300_000, 1_000_000, 3_000_000) * 4:
            np.ones(size // 8)

    burst()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    burst()
    pages = 4 * 4_300_000 / 4096
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / pages)
""")


def test_configured_allocator_reuses_a_requests_arrays_without_faulting_pages_again() -> None:
    assert run(BURST_AGAIN, "configured") < 0.2
    assert run(BURST_AGAIN, "small-threshold") > 0.8  # the setting this one replaced
