"""glibc malloc tuning for a worker process with hundreds of busy threads.

Each HTTP response is read with `recv(65536)`: a 64 KiB buffer, shrunk to the bytes received.
Below glibc's mmap threshold these buffers come from the heap, and with 200 threads reading at
once they leave it fragmented: in `zns bench` a worker's RSS keeps rising. With a fixed 64 KiB
threshold they are mapped and unmapped whole instead (figures in docs/performance.md). Not glibc
(musl, macOS): nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # mallopt parameter, from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 64 * 1024


def tune_malloc() -> bool:
    """Serve allocations of 64 KiB and more with mmap; True when glibc took the setting."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not applied:
        log.info("malloc tuning not applied (mallopt refused)")
    return applied
