"""Keep message-sized buffers off ``mmap``, where every new buffer costs a page fault per 4 KiB.

A request with two 480x640 frames is 1.8 MB. glibc's malloc serves blocks that large with a
fresh ``mmap`` each time and unmaps them on free, so every copy of a message (packing, the
websocket mask, socket buffers, unpacking) first page-faults its way through ~450 new pages.
Measured here: 868 minor faults and 2.5 ms of CPU per websocket send of such a message, against
0 faults and 0.15 ms once malloc keeps these blocks in its heap. Raising malloc's mmap and trim
thresholds does that; freed memory then stays in the process for reuse (bounded by the peak).

Only glibc has ``mallopt``; elsewhere (macOS, musl) this does nothing. ``VLA_MALLOC_TUNING=0``
turns it off.
"""

from __future__ import annotations

import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps the mmap threshold at 32 MiB on 64-bit systems; messages are 16 MiB at most by default.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024

_done: bool | None = None


def keep_large_buffers() -> bool:
    """Tune glibc's malloc once per process; returns whether it was tuned."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("VLA_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        _done = False
    return _done
