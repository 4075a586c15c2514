"""Writing what an evaluation shows: an episode's camera frames as MP4 or GIF, and the success plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """RGB uint8 frames to ``path``: .gif with Pillow, .mp4 with imageio-ffmpeg (or OpenCV)."""
    path = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
        return path
    if suffix != ".mp4":
        raise ValueError(f"video must be .mp4 or .gif, got {path.name}")
    try:
        import imageio.v2 as imageio

        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
            for f in frames:
                writer.append_data(np.asarray(f, dtype=np.uint8))
        return path
    except ImportError:
        pass
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(np.asarray(f, dtype=np.uint8)[..., ::-1]))
    finally:
        writer.release()
    return path


def plot_success(results: dict, path: str | Path) -> Path:
    """Bars of success@K per task, success@1 with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    tasks = list(results["tasks"])
    ks = results["k"]
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(tasks) + 2), 4))
    width = 0.8 / max(1, len(ks))
    x = np.arange(len(tasks))
    for i, k in enumerate(ks):
        values = [results["tasks"][t]["success_at"].get(str(k)) for t in tasks]
        heights = [0.0 if v is None else v for v in values]
        offset = (i - (len(ks) - 1) / 2) * width
        if k == 1:
            # at 0% or 100% the interval's edge meets the rate up to rounding: never a negative bar
            lo = [max(0.0, results["tasks"][t]["success_at"]["1"] - results["tasks"][t]["ci95"][0]) for t in tasks]
            hi = [max(0.0, results["tasks"][t]["ci95"][1] - results["tasks"][t]["success_at"]["1"]) for t in tasks]
            ax.bar(x + offset, heights, width, yerr=[lo, hi], capsize=4, label="success@1 (95% CI)")
        else:
            ax.bar(x + offset, heights, width, label=f"success@{k}")
        for xi, v in zip(x + offset, values):
            ax.text(xi, (v or 0) + 0.02, "n/a" if v is None else f"{v:.0%}", ha="center", fontsize=8)
    n = [results["tasks"][t]["episodes"] for t in tasks]
    ax.set_xticks(x, [f"{t}\n(n={m})" for t, m in zip(tasks, n)])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("success")
    ax.set_title(f"{results.get('policy') or 'policy'} on {results['robot']} ({results['merge']})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
