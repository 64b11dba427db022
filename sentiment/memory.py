"""glibc heap settings for a long-running, multi-threaded app process.

Python frees memory to the C allocator, but glibc keeps the freed space for
reuse instead of returning it to the system, so a process's RSS keeps the
high-water mark of every burst (a checkpoint, a 1,000-review batch, the
guard's holdout). The settings and the call below keep it close to what is
in use. All are no-ops where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def configure(arenas: int = 2, mmap_threshold: int = 4 * 1024 * 1024) -> None:
    """Cap glibc's per-thread heaps and fix its mmap and trim thresholds; call before any
    thread starts.

    * Arenas: glibc gives each thread that allocates while another does its
      own arena (up to 8 per core) and rarely returns their free space, so
      RSS grows with the thread count rather than with the work
      (MALLOC_ARENA_MAX=2).
    * mmap threshold: blocks above it get their own mapping, returned to the
      system as soon as they are freed. glibc raises the threshold to the
      size of each such block freed (up to 32 MB), after which arrays of
      tens of MB come from the heap and stay there after use; fixed at 4 MB,
      only the few MB a request's arrays need are kept for reuse. Every
      mapping costs a page fault per 4 KB touched: at 256 KB, the chunks of
      a 1,000-review batch were all fresh mappings, about a tenth of its CPU
      (docs/measurements.md, Serving).
    * trim threshold: twice the mmap threshold, glibc's own rule before a
      threshold is fixed (fixing one leaves the other at 128 KB, and the top
      of the heap is then handed back and faulted in again on every request).
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * mmap_threshold)


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (``malloc_trim``).

    Meant after a burst of temporary allocations smaller than the mmap
    threshold (the strings and small arrays of vectorising many reviews);
    it is cheap next to the burst.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
