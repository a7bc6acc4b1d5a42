"""Process-wide CPU settings for fast training: OpenMP threads that sleep rather than spin while they
wait, and a glibc allocator that keeps freed memory for reuse instead of returning it to the OS and
page-faulting it back on the next update. Importing this module does not import torch.

A learner update allocates and frees the same large activations every time. With glibc's defaults,
blocks over its mmap threshold (32 MiB at most) are mmapped and unmapped on each use, and a freed
heap top is trimmed, so every update pays again for page faults on fresh zeroed pages (measured in
docs/benchmarks.md with ``benchmarks/profile_learner.py``).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
OPT_OUT = "S3TA_MALLOC_TUNING"
_tuned = False


def wait_passively() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it; call it before torch loads.

    With OpenMP's default spinning, a learner whose threads fill a small machine slows down ~50x
    whenever another process (an actor, a test) holds one of its cores (docs/design.md).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def tune_allocator() -> bool:
    """Make glibc's malloc serve every block from the heap and never trim it, so the memory of one
    update is reused by the next. Returns whether it was applied: only on Linux with glibc, and not
    when the environment sets ``S3TA_MALLOC_TUNING=0`` (e.g. with jemalloc or tcmalloc preloaded).

    The process's resident memory then stays at its peak, which for training is the steady state.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get(OPT_OUT, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # no mmap for large blocks (above 64 MiB, threads other than the main one still get them), no trimming
    _tuned = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    return _tuned
