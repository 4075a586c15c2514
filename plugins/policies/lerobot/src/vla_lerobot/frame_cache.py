"""Decode every video frame of a LeRobot dataset once per training run.

A LeRobotDataset decodes the frames of each item on demand, seeking in the episode's video
for every sample. With AV1 video (what LeRobot and vla's recorder write) a seek decodes from
the last key frame, so a small policy's training step on a CPU goes almost entirely into
decoding, epoch after epoch. ``cache_decoded_frames`` decodes each episode's video in one
sequential pass (lerobot's own ``decode_video_frames``), keeps the frames as uint8 (they were
uint8 in the video, so ``x / 255`` and back is exact), and makes the dataset's video query
read them from memory. Everything else about an item (action chunks, padding masks, tasks)
still comes from LeRobot's ``__getitem__``.

With ``size=(height, width)`` the frames are also resized once, as they are decoded, with
OpenCV's area filter: what vla's client does when a policy asks for smaller frames than the
camera gives, so a policy trained on 64x64 frames of a 224x224 recording sees at training what
it will see when served. ``resize_queries`` does the same for a dataset too large to cache.

This replaces ``LeRobotDataset._query_videos`` on the one dataset instance: a private method
of lerobot 0.4.4 (the pinned version), with the same arguments and result.
"""

from __future__ import annotations

from typing import Callable


def resize_frames(frames, size: tuple[int, int]):
    """(T, C, H, W) uint8 or float frames -> (T, C, height, width), OpenCV area filter per frame."""
    import cv2
    import numpy as np
    import torch

    height, width = size
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    array = frames.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in array])
    if out.ndim == 3:  # one channel: cv2 drops the axis
        out = out[..., None]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def resize_queries(dataset, size: tuple[int, int]) -> None:
    """Resize every frame ``dataset`` decodes to ``size`` (no cache: decoded on each query)."""
    import torch

    query = dataset._query_videos

    def query_videos(query_timestamps, ep_idx):
        item = query(query_timestamps, ep_idx)
        for key, frames in item.items():
            single = frames.ndim == 3
            # round through uint8, as the client's frames are uint8 when it resizes them
            as_uint8 = (frames.unsqueeze(0) if single else frames).mul(255).round().clamp(0, 255).to(torch.uint8)
            resized = resize_frames(as_uint8, size).to(torch.float32).div_(255)
            item[key] = resized.squeeze(0) if single else resized
        return item

    dataset._query_videos = query_videos


def cache_decoded_frames(dataset, progress: Callable[[int, int], None] | None = None,
                         size: tuple[int, int] | None = None) -> int:
    """Decode all frames of ``dataset`` into memory and serve its video queries from there;
    with ``size`` (height, width), resized to it.

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
            if size is not None:
                frames[(key, ep_idx)] = resize_frames(frames[(key, ep_idx)], size)
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
