"""Process allocator setting for the local engine's array temporaries.

A micro-batch of 100,000 trades makes a few dozen short-lived arrays of ~0.1–1 MB. With glibc's
defaults each one may come from a fresh ``mmap`` and be unmapped on free, so every batch pays
page faults on memory it just gave back — about a third of the engine's time on a 2-core VM
(bench/features.py). Raising ``M_MMAP_THRESHOLD`` to its maximum (32 MiB on 64-bit) serves
those arrays from the heap, where freed memory is reused. The cost: up to that much freed
memory per arena stays mapped (RSS) instead of returning to the OS at once.

Process-wide, so it is applied by the process entry points (``engines.run`` for
``signalstack stream --engine local``, the feature bench), never on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

from signalstack.logs import get_logger

log = get_logger(__name__)

M_MMAP_THRESHOLD: Final = -3  # glibc <malloc.h>
MAX_MMAP_THRESHOLD: Final = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


def reuse_freed_arrays(threshold: int = MAX_MMAP_THRESHOLD) -> bool:
    """Serve allocations below ``threshold`` bytes from the heap (glibc ``mallopt``).

    Returns False (and changes nothing) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
    log.debug("mallopt M_MMAP_THRESHOLD", threshold=threshold, applied=ok)
    return ok


__all__ = ["reuse_freed_arrays"]
