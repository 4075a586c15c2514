"""Decode every video frame of a LeRobot dataset once per training run.

A LeRobotDataset decodes the frames of each item on demand, seeking in the episode's video
for every sample. With AV1 video (what LeRobot and vla's recorder write) a seek decodes from
the last key frame, so a small policy's training step on a CPU goes almost entirely into
decoding, epoch after epoch. ``cache_decoded_frames`` decodes each episode's video in one
sequential pass (lerobot's own ``decode_video_frames``), keeps the frames as uint8 (they were
uint8 in the video, so ``x / 255`` and back is exact), and makes the dataset's video query
read them from memory. Everything else about an item (action chunks, padding masks, tasks)
still comes from LeRobot's ``__getitem__``.

This replaces ``LeRobotDataset._query_videos`` on the one dataset instance: a private method
of lerobot 0.4.4 (the pinned version), with the same arguments and result.
"""

from __future__ import annotations

from typing import Callable


def cache_decoded_frames(dataset, progress: Callable[[int, int], None] | None = None) -> int:
    """Decode all frames of ``dataset`` into memory and serve its video queries from there.

    Returns the number of frames decoded (per camera).
    """
    import torch
    from lerobot.datasets.video_utils import decode_video_frames

    meta = dataset.meta
    dataset._ensure_hf_dataset_loaded()
    timestamps = torch.as_tensor(dataset.hf_dataset["timestamp"]).tolist()
    episode_indices = torch.as_tensor(dataset.hf_dataset["episode_index"]).tolist()
    rows: dict[int, list[int]] = {}
    for row, ep in enumerate(episode_indices):
        rows.setdefault(int(ep), []).append(row)

    frames: dict[tuple[str, int], torch.Tensor] = {}
    lookup: dict[tuple[str, int], dict[int, int]] = {}
    episodes = sorted(rows)
    for n, ep_idx in enumerate(episodes):
        ep = meta.episodes[ep_idx]
        ep_ts = [timestamps[r] for r in rows[ep_idx]]
        for key in meta.video_keys:
            start = ep[f"videos/{key}/from_timestamp"]
            path = dataset.root / meta.get_video_file_path(ep_idx, key)
            decoded = decode_video_frames(path, [start + t for t in ep_ts], dataset.tolerance_s, dataset.video_backend)
            frames[(key, ep_idx)] = decoded.mul(255).round_().to(torch.uint8)
            lookup[(key, ep_idx)] = {_ms(t): i for i, t in enumerate(ep_ts)}
        if progress is not None:
            progress(n + 1, len(episodes))

    def query_videos(query_timestamps: dict[str, list[float]], ep_idx: int) -> dict[str, torch.Tensor]:
        item = {}
        for key, query in query_timestamps.items():
            index = lookup[(key, ep_idx)]
            picked = frames[(key, ep_idx)][[index[_ms(t)] for t in query]]
            item[key] = picked.to(torch.float32).div_(255).squeeze(0)
        return item

    dataset._query_videos = query_videos
    return len(timestamps)


def _ms(t: float) -> int:
    return int(round(float(t) * 1000))
