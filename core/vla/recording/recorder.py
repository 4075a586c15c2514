"""Record a robot's episodes into a LeRobot dataset (LeRobotDataset v3.0, lerobot 0.4.4).

One dataset per run, named ``YYYYMMDD_task_armID_runID`` under the recording root; one
episode per ``start_episode`` ... ``end_episode``. Cameras are stored as video, the joint
state and the commanded action as float32 vectors named by joint, and the goal text as the
episode's task.

Why each episode is finalized and the dataset reopened: LeRobotDataset v3 appends episodes
into shared parquet and mp4 files and writes a parquet file's footer only in ``finalize()``.
A process killed before that leaves files that cannot be read, and with them every episode
they held. So after each episode the recorder calls ``finalize()`` (footers written), drops
the dataset object and reopens it from disk for the next episode; on reopen lerobot starts new
data, metadata and video files ("resuming"), so a finished episode's files are never written
again. A kill mid-episode then loses only that episode's temporary PNGs; a kill inside
``save_episode`` leaves a half-written last episode that ``repair_dataset`` removes when the
run is reopened.

lerobot (and with it torch) is imported only when the first frame arrives, never at import.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
from pathlib import Path
from typing import Any

from vla.recording.features import dataset_fps, lerobot_frame, robot_features
from vla.recording.naming import dataset_name, new_run_id
from vla.recording.repair import RepairReport, repair_dataset

log = logging.getLogger(__name__)


class RecordingError(RuntimeError):
    """The recorder was used out of order or the dataset on disk does not fit the robot."""


class EpisodeRecorder:
    """Writes episodes from ``robot`` to ``root/YYYYMMDD_task_armID_runID``.

    ``run_id=None`` starts a new run (a time-of-day id); naming an existing run appends to it
    after removing whatever an interrupted episode left behind. ``fps`` defaults to the
    robot's ``control_hz``.
    """

    def __init__(
        self,
        root: str | Path,
        robot,
        task: str,
        arm_id: str,
        run_id: str | None = None,
        fps: float | None = None,
        *,
        vcodec: str = "libsvtav1",
        image_writer_threads: int = 2,
        parallel_encoding: bool = True,
        date: _dt.date | None = None,
        robot_type: str | None = None,
    ):
        self.root = Path(root)
        self.robot = robot
        self.task = task
        self.arm_id = arm_id
        self.fps = dataset_fps(fps, robot.control_hz)
        self.vcodec = vcodec
        self.image_writer_threads = image_writer_threads
        self.parallel_encoding = parallel_encoding
        self.robot_type = robot_type or getattr(robot, "robot_type", None) or type(robot).__name__.lower()
        self.joint_names = tuple(robot.joint_names)

        if run_id is None:
            run_id = new_run_id()
            name = dataset_name(task, arm_id, run_id, date)
            suffix = 1
            while (self.root / name).exists():  # two runs started within the same second
                suffix += 1
                name = dataset_name(task, arm_id, f"{run_id}-{suffix}", date)
            run_id = name.rsplit("_", 1)[1]
        self.run_id = run_id
        self.name = dataset_name(task, arm_id, run_id, date)
        self.path = self.root / self.name
        self.repo_id = f"local/{self.name}"

        self.repair_report: RepairReport | None = None
        if self.path.exists():
            self.repair_report = repair_dataset(self.path)

        self._dataset = None  # a LeRobotDataset, open only while an episode is being written
        self._features: dict[str, dict] | None = None
        self._episode_task: str | None = None
        self._episode_frames = 0
        self._closed = False
        self.saved_episodes: list[int] = []

    # ------------------------------------------------------------------ public API

    @property
    def recording(self) -> bool:
        """True between ``start_episode`` and ``end_episode``/``discard_episode``."""
        return self._episode_task is not None

    @property
    def frames_in_episode(self) -> int:
        return self._episode_frames

    def start_episode(self, task: str | None = None) -> None:
        """Begin an episode whose frames carry ``task`` (the goal text; the run's task by default)."""
        self._check_open()
        if self.recording:
            raise RecordingError("start_episode: an episode is already being recorded; end or discard it first")
        task = self.task if task is None else task
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task: expected the goal text, got {task!r}")
        self._episode_task = task
        self._episode_frames = 0

    def add_frame(self, observation: dict[str, Any], action: Any) -> None:
        """Append one control tick: the observation the policy saw and the action sent to the arm."""
        self._check_open()
        if not self.recording:
            raise RecordingError("add_frame: no episode is being recorded; call start_episode first")
        if self._features is None:
            self._features = robot_features(self.robot, observation)
        frame = lerobot_frame(self._features, observation, action, self._episode_task)
        dataset = self._open_dataset()
        if self._episode_frames == 0:
            self._remove_episode_images(dataset)  # PNGs a killed process left for this episode index
        dataset.add_frame(frame)
        self._episode_frames += 1

    def end_episode(self) -> int:
        """Encode and save the episode, close its files, and return its episode index."""
        self._check_open()
        if not self.recording:
            raise RecordingError("end_episode: no episode is being recorded")
        if self._episode_frames == 0:
            self._episode_task = None
            raise RecordingError("end_episode: the episode has no frames; nothing was saved")
        dataset = self._dataset
        index = dataset.meta.total_episodes
        try:
            dataset.save_episode(parallel_encoding=self.parallel_encoding)
            dataset.finalize()  # parquet footers: from here on the episode survives a kill
        except BaseException:
            self._release_dataset()
            repair_dataset(self.path)  # drop what the failed save half-wrote; keep earlier episodes
            raise
        finally:
            self._release_dataset()
            self._episode_task = None
            self._episode_frames = 0
        self.saved_episodes.append(index)
        log.info("saved episode %d of %s", index, self.path)
        return index

    def discard_episode(self) -> None:
        """Drop the episode in progress; the episodes saved before it are untouched."""
        if not self.recording:
            return
        dataset = self._dataset
        if dataset is not None:
            if dataset.episode_buffer is not None and dataset.episode_buffer.get("size", 0) > 0:
                # lerobot deletes only image-dtype PNGs here; the video frames are removed below
                dataset.clear_episode_buffer(delete_images=True)
            self._remove_episode_images(dataset)
        self._episode_task = None
        self._episode_frames = 0

    def close(self) -> None:
        """Discard an unfinished episode and release the dataset. Safe to call twice."""
        if self._closed:
            return
        try:
            self.discard_episode()
        finally:
            self._release_dataset()
            images = self.path / "images"
            if images.is_dir():
                shutil.rmtree(images, ignore_errors=True)
            self._closed = True

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EpisodeRecorder({str(self.path)!r}, fps={self.fps}, saved={self.saved_episodes})"

    # ------------------------------------------------------------------ internals

    def _check_open(self) -> None:
        if self._closed:
            raise RecordingError(f"the recorder for {self.path} is closed")

    def _open_dataset(self):
        if self._dataset is not None:
            return self._dataset
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if (self.path / "meta" / "info.json").is_file():
            dataset = LeRobotDataset(self.repo_id, root=self.path, vcodec=self.vcodec)
            self._check_compatible(dataset)
            # flush each episode's metadata row inside save_episode, not ten episodes later
            dataset.meta.metadata_buffer_size = 1
            if self.image_writer_threads:
                dataset.start_image_writer(num_processes=0, num_threads=self.image_writer_threads)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            dataset = LeRobotDataset.create(
                self.repo_id,
                fps=self.fps,
                features=self._features,
                root=self.path,
                robot_type=self.robot_type,
                use_videos=True,
                image_writer_threads=self.image_writer_threads,
                vcodec=self.vcodec,
                metadata_buffer_size=1,
            )
        self._dataset = dataset
        return dataset

    def _check_compatible(self, dataset) -> None:
        if dataset.fps != self.fps:
            raise RecordingError(f"{self.path} was recorded at {dataset.fps} fps, this recorder runs at {self.fps}")
        on_disk = {k: ft for k, ft in dataset.features.items() if k in self._features}
        for key, spec in self._features.items():
            have = on_disk.get(key)
            if have is None or tuple(have["shape"]) != tuple(spec["shape"]) or have["dtype"] != spec["dtype"]:
                raise RecordingError(
                    f"{self.path} does not fit this robot: feature {key!r} is "
                    f"{'missing' if have is None else (have['dtype'], tuple(have['shape']))} on disk, "
                    f"the robot gives {(spec['dtype'], tuple(spec['shape']))}"
                )

    def _remove_episode_images(self, dataset) -> None:
        index = dataset.meta.total_episodes
        for key in self._features or {}:
            if (self._features[key]["dtype"]) in ("video", "image"):
                folder = self.path / "images" / key / f"episode-{index:06d}"
                if folder.is_dir():
                    shutil.rmtree(folder)

    def _release_dataset(self) -> None:
        dataset, self._dataset = self._dataset, None
        if dataset is None:
            return
        try:
            dataset.stop_image_writer()
        finally:
            dataset.finalize()
