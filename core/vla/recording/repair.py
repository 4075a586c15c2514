"""Bring a LeRobot dataset back to its last finished episode after the recorder was killed.

The recorder writes each episode into files of its own (data parquet, episodes-metadata
parquet, one video per camera) and closes them before the next episode starts, so a kill can
only leave behind what belonged to the episode in progress:

- PNG frames under ``images/`` and encoder temp folders (``tmp*``) in the dataset root;
- a parquet file without its footer (killed while ``save_episode`` was writing it);
- a video, a data file or an info.json total that no readable episode row refers to.

``repair_dataset`` removes exactly those and rewrites info.json's totals and stats.json from
the episodes that remain. It never edits a finished episode's files.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import attrs

from vla.atomicfile import write_json_atomic

log = logging.getLogger(__name__)

INFO = Path("meta/info.json")
EPISODES_DIR = Path("meta/episodes")


class DatasetDamaged(RuntimeError):
    """The dataset cannot be repaired without touching finished episodes."""


@attrs.define
class RepairReport:
    removed: list[str] = attrs.field(factory=list)
    episodes: int = 0
    frames: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.removed)


def _readable_parquet(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
        return True
    except Exception:  # a footer-less or truncated file raises ArrowInvalid/OSError
        return False


def _remove(path: Path, root: Path, report: RepairReport) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    report.removed.append(str(path.relative_to(root)))


def repair_dataset(root: str | Path) -> RepairReport:
    """Remove what an interrupted episode left in the dataset at ``root``; see the module doc."""
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / INFO
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError:
        raise DatasetDamaged(f"{root}: no {INFO}; this is not a LeRobot dataset") from None
    except json.JSONDecodeError as exc:
        raise DatasetDamaged(f"{root}: {INFO} is not valid JSON ({exc}); it was cut off while being written") from None

    report = RepairReport()
    # 1. temporary files of the episode in progress
    for leftover in [root / "images", *root.glob("tmp*")]:
        if leftover.exists():
            _remove(leftover, root, report)

    # 2. episode rows, from every readable episodes-metadata file
    rows: list[dict] = []
    for path in sorted((root / EPISODES_DIR).glob("*/*.parquet")):
        if not _readable_parquet(path):
            _remove(path, root, report)
            continue
        rows.extend(pq.read_table(path).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])

    # keep the longest prefix 0..k-1 of episodes whose data file is readable and videos exist
    video_keys = [k for k, ft in info["features"].items() if ft.get("dtype") == "video"]
    kept: list[dict] = []
    for expected, row in enumerate(rows):
        data_file = root / info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        videos = [
            root / info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
            )
            for key in video_keys
        ]
        if row["episode_index"] != expected or not _readable_parquet(data_file) or not all(v.is_file() for v in videos):
            break
        kept.append(row)
    if len(kept) < len(rows):
        lost = [r["episode_index"] for r in rows[len(kept):]]
        raise DatasetDamaged(
            f"{root}: episodes {lost} have metadata but their data or videos are unreadable; "
            "they were finished once, so the recorder will not delete them"
        )

    # 3. data and video files that no kept episode refers to
    referenced = set()
    for row in kept:
        referenced.add(root / info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
        for key in video_keys:
            referenced.add(root / info["video_path"].format(
                video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
            ))
    for pattern in ("data/*/*.parquet", "videos/*/*/*.mp4"):
        for path in sorted(root.glob(pattern)):
            if path not in referenced:
                _remove(path, root, report)

    # 4. totals and stats from the kept episodes
    total_frames = kept[-1]["dataset_to_index"] if kept else 0
    if info.get("total_episodes") != len(kept) or info.get("total_frames") != total_frames:
        report.removed.append(
            f"{INFO}: total_episodes {info.get('total_episodes')} -> {len(kept)}, "
            f"total_frames {info.get('total_frames')} -> {total_frames}"
        )
        info["total_episodes"] = len(kept)
        info["total_frames"] = total_frames
        info["splits"] = {"train": f"0:{len(kept)}"} if kept else {}
        write_json_atomic(info_path, info, indent=4, ensure_ascii=False)
        _rewrite_stats(root, kept)

    report.episodes = len(kept)
    report.frames = total_frames
    if report.changed:
        log.warning("repaired %s: %s", root, "; ".join(report.removed))
    return report


def _rewrite_stats(root: Path, kept: list[dict]) -> None:
    """stats.json aggregated over the kept episodes' own stats (the same rule lerobot uses)."""
    import numpy as np
    from lerobot.datasets.compute_stats import aggregate_stats
    from lerobot.datasets.utils import serialize_dict, unflatten_dict

    stats_path = root / "meta/stats.json"
    if not kept:
        if stats_path.exists():
            stats_path.unlink()
        return
    per_episode = []
    for row in kept:
        flat = {k.removeprefix("stats/"): np.asarray(v) for k, v in row.items() if k.startswith("stats/")}
        per_episode.append(unflatten_dict(flat))
    write_json_atomic(stats_path, serialize_dict(aggregate_stats(per_episode)), indent=4, ensure_ascii=False)
