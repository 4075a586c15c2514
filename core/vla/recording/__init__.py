"""Episode recording into LeRobot datasets (lerobot 0.4.4, format v3.0).

`vla run --record DIR` uses ``EpisodeRecorder``; it imports lerobot only when it writes.
"""

from vla.recording.naming import dataset_name, parse_dataset_name, slugify
from vla.recording.recorder import EpisodeRecorder, RecordingError
from vla.recording.repair import DatasetDamaged, RepairReport, repair_dataset

__all__ = [
    "DatasetDamaged",
    "EpisodeRecorder",
    "RecordingError",
    "RepairReport",
    "dataset_name",
    "parse_dataset_name",
    "repair_dataset",
    "slugify",
]
