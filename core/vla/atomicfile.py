"""Files replaced in one step: a reader (or a run killed at any instant) sees the old content or
the new, never half a file.

The new content goes to a temporary file in the same folder (a rename is atomic only within one
filesystem) and is renamed over the old one. ``durable=True`` also flushes the file and the
folder entry to disk, for state that must survive a power cut (checkpoints, calibrations); live
status files that are rewritten twice a second skip that cost.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, data: bytes | str, *, durable: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, *, durable: bool = True, **dump_options) -> Path:
    return write_atomic(path, json.dumps(data, **dump_options), durable=durable)
