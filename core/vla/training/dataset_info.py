"""What `vla train` needs to know about a LeRobot dataset before it imports lerobot.

Reads ``meta/info.json`` (LeRobot v3.0 layout) with the standard library only, and checks that
several datasets can be trained on together (`vla train --dataset A --dataset B`): a batch
stacks frames from all of them, so every feature must have the same dtype, shape and names
(joint order) in each, at the same frame rate.
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
    # feature name -> (dtype, shape, names): what must agree across datasets trained together
    specs: dict = attrs.field(factory=dict, eq=False)
    robot_type: str | None = None


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
    features = info.get("features") or {}
    if not isinstance(features, dict):
        raise DatasetError(f"{info_path}: 'features' is not a mapping")
    return DatasetSummary(
        root=root,
        frames=frames,
        episodes=episodes,
        fps=float(info.get("fps", 0) or 0),
        features=tuple(features),
        version=str(info.get("codebase_version", "?")),
        specs={name: _spec(f) for name, f in features.items()},
        robot_type=info.get("robot_type"),
    )


def _spec(feature) -> tuple:
    if not isinstance(feature, dict):
        return (None, None, None)
    names = feature.get("names")
    # images name their axes (height, width, channels); what matters there is the shape
    if feature.get("dtype") in ("video", "image"):
        names = None
    elif isinstance(names, dict):  # {"motors": [...]} in some LeRobot datasets
        names = tuple(f"{k}: {v}" for k, v in sorted(names.items()))
    elif isinstance(names, list):
        names = tuple(names)
    return (feature.get("dtype"), tuple(feature.get("shape") or ()), names)


def _describe(spec: tuple) -> str:
    dtype, shape, names = spec
    text = f"{dtype} {'x'.join(str(v) for v in shape) or 'scalar'}"
    return text + (f" [{', '.join(map(str, names))}]" if names else "")


def check_same_features(summaries: list[DatasetSummary]) -> None:
    """Raise DatasetError naming the first dataset that cannot be trained together with the first
    one, and every difference: a feature one has and the other lacks, another dtype, shape or
    joint order, another frame rate; or the same folder given twice."""
    if not summaries:
        raise DatasetError("no dataset given")
    seen: dict[Path, Path] = {}
    for s in summaries:
        key = s.root.resolve()
        if key in seen:
            raise DatasetError(f"{s.root} is given twice (as {seen[key]}); each dataset once")
        seen[key] = s.root
    first = summaries[0]
    for other in summaries[1:]:
        problems = []
        if other.fps != first.fps:
            problems.append(f"fps {other.fps:g}, not {first.fps:g}")
        for name in sorted(set(first.specs) - set(other.specs)):
            problems.append(f"lacks {name} ({_describe(first.specs[name])})")
        for name in sorted(set(other.specs) - set(first.specs)):
            problems.append(f"has {name} ({_describe(other.specs[name])}) that {first.root} lacks")
        for name in sorted(set(first.specs) & set(other.specs)):
            a, b = first.specs[name], other.specs[name]
            if a != b:
                problems.append(f"{name} is {_describe(b)}, not {_describe(a)}")
        if problems:
            raise DatasetError(
                f"{other.root} cannot be trained together with {first.root}: " + "; ".join(problems)
                + " (datasets trained together need the same features at the same fps)"
            )
