"""Labelled clips: the folder `vla sim clips` writes and a lab keeps its human-labelled set in.

Layout (pinned in the team contract):
  DIR/labels.jsonl   one JSON object per line:
                     {"id": "...", "task": "<task id>", "goal": "<goal text>",
                      "success": true|false, "frames": ["<id>/000.png", ...]}
  DIR/<id>/000.png   PNG RGB frames, oldest first, paths relative to DIR
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

import attrs
import numpy as np

LABELS_FILE = "labels.jsonl"


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file and line."""


@attrs.frozen
class Clip:
    id: str
    task: str
    goal: str
    success: bool
    frames: tuple[Path, ...]  # absolute paths

    def load_frames(self) -> list[np.ndarray]:
        from vla.rewarding.frames import load_image_file

        return [load_image_file(p) for p in self.frames]


def labels_path(root: str | Path) -> Path:
    root = Path(root)
    return root / LABELS_FILE if root.is_dir() else root


def load_clips(root: str | Path, tasks: Iterable[str] | None = None, check_files: bool = True) -> list[Clip]:
    """Read DIR/labels.jsonl (or the given .jsonl file), optionally only some task ids."""
    path = labels_path(root)
    if not path.is_file():
        raise LabelsError(f"{path}: no such labels file (expected DIR/{LABELS_FILE})")
    base = path.parent
    wanted = set(tasks) if tasks else None
    clips: list[Clip] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelsError(f"{where}: not valid JSON ({exc})") from None
        clip = _clip(obj, base, where, check_files)
        if clip.id in seen:
            raise LabelsError(f"{where}: clip id {clip.id!r} repeats")
        seen.add(clip.id)
        if wanted is None or clip.task in wanted:
            clips.append(clip)
    if not clips:
        raise LabelsError(f"{path}: no clips" + (f" for tasks {sorted(wanted)}" if wanted else ""))
    return clips


def _clip(obj, base: Path, where: str, check_files: bool) -> Clip:
    if not isinstance(obj, dict):
        raise LabelsError(f"{where}: expected a JSON object")
    for key, kind in (("id", str), ("task", str), ("goal", str), ("success", bool), ("frames", list)):
        if key not in obj:
            raise LabelsError(f"{where}: missing field {key!r}")
        if not isinstance(obj[key], kind):
            raise LabelsError(f"{where}: field {key!r} must be {kind.__name__}, got {type(obj[key]).__name__}")
    if not obj["frames"] or not all(isinstance(f, str) for f in obj["frames"]):
        raise LabelsError(f"{where}: 'frames' must be a non-empty list of paths")
    frames = []
    for rel in obj["frames"]:
        p = (base / rel).resolve()
        if base.resolve() not in p.parents:
            raise LabelsError(f"{where}: frame path {rel!r} leaves the labels folder")
        if check_files and not p.is_file():
            raise LabelsError(f"{where}: frame {rel!r} does not exist")
        frames.append(p)
    return Clip(id=obj["id"], task=obj["task"], goal=obj["goal"], success=obj["success"], frames=tuple(frames))


class ClipWriter:
    """Writes clips in the labelled-clips layout (used by tests and by anyone recording a set)."""

    def __init__(self, root: str | Path, append: bool = False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.root / LABELS_FILE, "a" if append else "w")

    def add(self, clip_id: str, task: str, goal: str, success: bool, frames: Iterable[np.ndarray]) -> None:
        from vla.rewarding.frames import save_png

        folder = self.root / clip_id
        folder.mkdir(parents=True, exist_ok=True)
        rels = []
        for i, frame in enumerate(frames):
            rel = f"{clip_id}/{i:03d}.png"
            save_png(self.root / rel, frame)
            rels.append(rel)
        line = {"id": clip_id, "task": task, "goal": goal, "success": bool(success), "frames": rels}
        self._fh.write(json.dumps(line) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def iter_by_task(clips: Iterable[Clip]) -> Iterator[tuple[str, list[Clip]]]:
    groups: dict[str, list[Clip]] = {}
    for clip in clips:
        groups.setdefault(clip.task, []).append(clip)
    yield from sorted(groups.items())
