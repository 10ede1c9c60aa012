"""Keep a long-lived server process's memory close to what it holds (glibc's allocator tuned, free pages returned).

Design notes:
    A server worker computes arrays of every size all day in several threads. With glibc's
    defaults, each thread may get its own malloc arena (up to 8 per core), and the
    threshold above which a block is mapped on its own (and unmapped when freed) rises
    to 32 MB after the first large block is freed, so large arrays then come from the
    arenas' heaps, which give memory back to the system only from their top. The result
    is a resident size that creeps far above what the caches hold, and workers replaced
    for memory they do not use. :func:`tune_allocator` caps the arenas and pins the
    threshold, so large arrays are always mapped and unmapped; :func:`release_free_memory`
    gives free heap pages back before the resident size is judged. Both do nothing where
    the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["MALLOC_ARENAS", "MMAP_THRESHOLD_BYTES", "release_free_memory", "tune_allocator"]

#: malloc arenas a process may have (glibc's default: 8 per core).
MALLOC_ARENAS = 2
#: Blocks at least this large are mapped on their own, and unmapped when freed.
MMAP_THRESHOLD_BYTES = 1 << 20
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc's mallopt parameters


@functools.cache
def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune_allocator() -> bool:
    """Cap the malloc arenas and pin the mmap threshold (see the module notes).

    Returns:
        Whether glibc accepted both settings (``False`` elsewhere).
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_free_memory() -> bool:
    """Give the free pages of every malloc heap back to the system (``malloc_trim(0)``).

    Returns:
        Whether any memory was released (``False`` where the C library is not glibc).
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
