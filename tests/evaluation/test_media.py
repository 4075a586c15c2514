"""Videos and the success plot that `vla eval` writes."""

import numpy as np
import pytest

from vla.evaluation.media import plot_success, write_video


def moving_square(n=12, h=48, w=64):
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[10:20, 4 * i : 4 * i + 10] = (255, 40, 40)
        frames.append(f)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_videos_round_trip_frame_count_and_colour(tmp_path, suffix):
    imageio = pytest.importorskip("imageio.v2")
    path = write_video(moving_square(), tmp_path / f"ep{suffix}", fps=10)
    frames = [np.asarray(f)[..., :3] for f in imageio.mimread(path)]
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    red = frames[5][15, 5 * 4 + 5].astype(int)
    assert red[0] > 180 and red[1] < 110 and red[2] < 110  # RGB order survived the encoder


def test_an_unknown_video_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        write_video(moving_square(2), tmp_path / "ep.avi", fps=10)


def test_success_plot_is_written(tmp_path):
    results = {"robot": "sim", "merge": "rtc", "policy": "scripted", "k": [1, 3],
               "tasks": {"lift": {"episodes": 4, "success_at": {"1": 0.75, "3": 1.0}, "ci95": [0.3, 0.95]},
                         "push_left": {"episodes": 2, "success_at": {"1": 0.5, "3": None}, "ci95": [0.1, 0.9]}}}
    path = plot_success(results, tmp_path / "s.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 5000
