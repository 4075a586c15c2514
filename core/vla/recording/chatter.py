"""Keep what the video encoder and LeRobot's dataset code print off the console.

SVT-AV1 (inside PyAV's FFmpeg) writes its banner and per-episode settings straight to file
descriptor 2 from C, and ``datasets`` draws "Map: ..." progress bars on stderr while an episode
is saved. Neither goes through Python's logging, so neither can be turned down there: while an
episode is encoded, descriptor 2 points at a log file instead. The control loop holds the arm
between episodes, so nothing a person needs to see is printed meanwhile; the progress display
picks up again afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def stderr_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send everything written to file descriptor 2 (C libraries and Python alike) to ``path``,
    appended; ``None`` changes nothing."""
    if path is None:
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
