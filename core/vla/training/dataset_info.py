"""What `vla train` needs to know about a LeRobot dataset before it imports lerobot.

Reads ``meta/info.json`` (LeRobot v3.0 layout) with the standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs


class DatasetError(ValueError):
    """The folder is not a readable LeRobot dataset."""


@attrs.frozen
class DatasetSummary:
    root: Path
    frames: int
    episodes: int
    fps: float
    features: tuple[str, ...]
    version: str


def read_dataset_summary(root: str | Path) -> DatasetSummary:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{info_path}: unreadable ({exc})") from None
    try:
        frames = int(info["total_frames"])
        episodes = int(info["total_episodes"])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{info_path}: missing total_frames or total_episodes") from None
    if frames <= 0 or episodes <= 0:
        raise DatasetError(f"{root}: the dataset is empty ({episodes} episodes, {frames} frames)")
    return DatasetSummary(
        root=root,
        frames=frames,
        episodes=episodes,
        fps=float(info.get("fps", 0) or 0),
        features=tuple(info.get("features", {})),
        version=str(info.get("codebase_version", "?")),
    )
