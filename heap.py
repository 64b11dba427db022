"""glibc heap settings for a long-running, multi-threaded app process.

Python frees memory to the C allocator, but glibc keeps the freed space for
reuse instead of returning it to the system, so a process's RSS keeps the
high-water mark of every burst (a checkpoint, a 1,000-review batch, the
guard's holdout). Two knobs keep it close to what is in use. Both are
no-ops where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import functools

M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread heaps: a threaded server otherwise keeps one per busy thread.

    glibc gives each thread that allocates while another does its own arena
    (up to 8 per core) and rarely returns their free space, so RSS grows with
    the thread count rather than with the work. Same as MALLOC_ARENA_MAX=2;
    call it before any thread starts.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (``malloc_trim``).

    Meant after a burst of temporary allocations; it is cheap next to the
    burst. Lowering glibc's mmap threshold instead would return big arrays
    as soon as they are freed, but then every verdict's 4 MB copy of the
    weights faults in fresh pages: fewer verdicts/s (README, Serving).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
