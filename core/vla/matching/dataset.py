"""A LeRobot dataset as the checks need it: tasks, episode starts, actions, camera frames.

Reads the v3.0 layout (what lerobot 0.4 and vla's recorder write) directly: ``meta/info.json``,
``meta/tasks.parquet``, ``meta/episodes/*/*.parquet`` and ``data/*/*.parquet`` with pyarrow, and
the frames of an episode from its video with PyAV (both are lerobot's own dependencies). It does
not import lerobot or torch, so a check over a dataset of a few hundred episodes takes seconds,
and frames are decoded only for the few episodes the camera check looks at.

Training datasets and eval recordings are read the same way: an eval recording made with
`vla run --record` is a LeRobot dataset too.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vla.robot import IMAGE_PREFIX, STATE_KEY

ACTION_KEY = "action"
SUPPORTED_VERSION = "v3.0"


class DatasetError(ValueError):
    """The folder is not a LeRobot dataset this module can read; the message says why."""


class LeRobotDatasetReader:
    """One LeRobot v3.0 dataset on disk. Tables are read on first use and kept."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset folder")
        if not info_path.is_file():
            raise DatasetError(f"{self.root}: not a LeRobot dataset (no meta/info.json)")
        try:
            self.info: dict[str, Any] = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{info_path}: unreadable ({exc})") from None
        version = str(self.info.get("codebase_version", "?"))
        if version != SUPPORTED_VERSION:
            raise DatasetError(
                f"{self.root}: LeRobot dataset format {version}; `vla doctor` reads {SUPPORTED_VERSION} "
                "(convert older ones with lerobot's convert_dataset_v21_to_v30)"
            )
        self.features: dict[str, dict] = dict(self.info.get("features", {}))
        for key in (STATE_KEY, ACTION_KEY):
            if key not in self.features:
                raise DatasetError(f"{self.root}: the dataset has no {key!r} feature")

    # ------------------------------------------------------------------ metadata

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def fps(self) -> float:
        return float(self.info.get("fps", 0) or 0)

    @property
    def total_frames(self) -> int:
        return int(self.info.get("total_frames", 0))

    @property
    def total_episodes(self) -> int:
        return int(self.info.get("total_episodes", 0))

    @property
    def robot_type(self) -> str | None:
        return self.info.get("robot_type")

    def names(self, key: str = ACTION_KEY) -> list[str]:
        """Column names of a vector feature (joint names for state and action)."""
        feature = self.features[key]
        names = feature.get("names")
        if isinstance(names, dict):  # some LeRobot datasets nest them: {"motors": [...]}
            names = next(iter(names.values()), None)
        size = int(feature["shape"][0])
        if not isinstance(names, list) or len(names) != size:
            return [f"{key}[{i}]" for i in range(size)]
        return [str(n) for n in names]

    @property
    def cameras(self) -> dict[str, tuple[int, int, int]]:
        """Camera name (the key without ``observation.images.``) -> (height, width, channels)."""
        out = {}
        for key, feature in self.features.items():
            if key.startswith(IMAGE_PREFIX) and feature.get("dtype") in ("video", "image"):
                shape = [int(v) for v in feature["shape"]]
                if feature.get("names") and list(feature["names"])[:1] == ["channels"]:
                    shape = [shape[1], shape[2], shape[0]]
                out[key[len(IMAGE_PREFIX):]] = tuple(shape)
        return out

    @cached_property
    def tasks(self) -> list[str]:
        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            raise DatasetError(f"{self.root}: no meta/tasks.parquet")
        table = _read_parquet([path]).to_pylist()
        by_index = {}
        for row in table:
            text = row.get("task", row.get("__index_level_0__"))
            by_index[int(row["task_index"])] = str(text)
        return [by_index[i] for i in sorted(by_index)]

    @cached_property
    def episodes(self) -> list[dict[str, Any]]:
        """One row per episode from ``meta/episodes`` (index, length, tasks, video spans), in order."""
        files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not files:
            raise DatasetError(f"{self.root}: no meta/episodes/*/*.parquet")
        columns = [c for c in _schema_names(files[0]) if not c.startswith("stats/")]
        rows = _read_parquet(files, columns=columns).to_pylist()
        rows.sort(key=lambda r: int(r["episode_index"]))
        return rows

    # ------------------------------------------------------------------ frames of data

    @cached_property
    def _data(self) -> dict[str, np.ndarray]:
        files = sorted((self.root / "data").glob("*/*.parquet"))
        if not files:
            raise DatasetError(f"{self.root}: no data/*/*.parquet")
        table = _read_parquet(files, columns=[STATE_KEY, ACTION_KEY, "episode_index", "frame_index", "task_index"])
        out = {}
        for key in (STATE_KEY, ACTION_KEY):
            column = table.column(key).combine_chunks()
            out[key] = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(len(table), -1)
        for key in ("episode_index", "frame_index", "task_index"):
            out[key] = table.column(key).to_numpy()
        order = np.lexsort((out["frame_index"], out["episode_index"]))
        return {k: v[order] for k, v in out.items()}

    @property
    def actions(self) -> np.ndarray:
        """(frames, joints) every action, episode by episode."""
        return self._data[ACTION_KEY]

    @property
    def states(self) -> np.ndarray:
        return self._data[STATE_KEY]

    @property
    def episode_index(self) -> np.ndarray:
        return self._data["episode_index"]

    def start_states(self) -> np.ndarray:
        """(episodes, joints) the first observed state of each episode."""
        data = self._data
        first = np.flatnonzero(np.r_[True, np.diff(data["episode_index"]) != 0])
        return data[STATE_KEY][first]

    def action_jumps(self) -> np.ndarray:
        """(n, joints) |a[t+1] - a[t]| between consecutive actions within each episode."""
        a, ep = self.actions, self.episode_index
        same = ep[1:] == ep[:-1]
        return np.abs(np.diff(a, axis=0))[same]

    def episode_tasks(self) -> list[str]:
        """The task text of each episode (its first frame's task)."""
        data, tasks = self._data, self.tasks
        first = np.flatnonzero(np.r_[True, np.diff(data["episode_index"]) != 0])
        return [tasks[int(i)] if 0 <= int(i) < len(tasks) else "?" for i in data["task_index"][first]]

    # ------------------------------------------------------------------ camera frames

    def frames(self, camera: str, episode: int, positions: tuple[float, ...] = (0.0,)) -> list[np.ndarray]:
        """Frames (HxWx3 uint8 RGB) of ``camera`` at fractions ``positions`` (0 first .. 1 last) of an episode."""
        if camera not in self.cameras:
            raise DatasetError(f"{self.root}: no camera {camera!r} (cameras: {', '.join(self.cameras) or 'none'})")
        row = self.episodes[episode]
        length = int(row["length"])
        wanted = sorted({min(length - 1, max(0, int(round(p * (length - 1))))) for p in positions})
        key = IMAGE_PREFIX + camera
        if self.features[key].get("dtype") == "image":
            return self._image_frames(key, row, wanted)
        template = self.info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        path = self.root / template.format(
            video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"])
        )
        start = float(row[f"videos/{key}/from_timestamp"])
        return decode_frames(path, [start + i / self.fps for i in wanted], tolerance_s=0.5 / self.fps)

    def _image_frames(self, key: str, row: dict, wanted: list[int]) -> list[np.ndarray]:
        import io

        from PIL import Image

        files = sorted((self.root / "data").glob("*/*.parquet"))
        table = _read_parquet(files, columns=[key, "episode_index", "frame_index"])
        ep = table.column("episode_index").to_numpy()
        fi = table.column("frame_index").to_numpy()
        cells = table.column(key).to_pylist()
        out = []
        for index in wanted:
            (pos,) = np.flatnonzero((ep == int(row["episode_index"])) & (fi == index))[:1]
            cell = cells[int(pos)]
            data = cell["bytes"] if isinstance(cell, dict) else cell
            out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        return out


def decode_frames(path: Path, timestamps: list[float], tolerance_s: float) -> list[np.ndarray]:
    """Frames of a video file at ``timestamps`` (seconds), decoded in one forward pass with PyAV."""
    import av

    if not path.is_file():
        raise DatasetError(f"{path}: the video file is missing")
    out: list[np.ndarray | None] = [None] * len(timestamps)
    order = sorted(range(len(timestamps)), key=timestamps.__getitem__)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = timestamps[order[0]]
        container.seek(max(0, int(first / stream.time_base)), stream=stream, backward=True, any_frame=False)
        k = 0
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            while k < len(order) and t >= timestamps[order[k]] - tolerance_s:
                if abs(t - timestamps[order[k]]) <= tolerance_s:
                    out[order[k]] = frame.to_ndarray(format="rgb24")
                k += 1
            if k >= len(order):
                break
    missing = [timestamps[i] for i, f in enumerate(out) if f is None]
    if missing:
        raise DatasetError(f"{path}: no frame at {', '.join(f'{t:.3f}' for t in missing)} s")
    return out  # type: ignore[return-value]


def _schema_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _read_parquet(files, columns=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        raise DatasetError(f"{Path(files[0]).parent}: unreadable parquet ({exc})") from None
