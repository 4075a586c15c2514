"""RewarderClient against the real service: every frame encoding agrees with in-process scoring,
errors come back as RewarderError with the server's code, and an absent server is a ConnectionError."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from vla.rewarder import Rewarder
from vla.rewarding.client import RewarderClient
from vla.rewarding.errors import RewarderError
from vla_heuristic.synthetic import TASK_GOALS, draw_scene


@pytest.mark.parametrize("encoding", ["png", "jpeg", "msgpack"])
def test_client_encodings_agree_with_in_process(serve, heuristic, encoding):
    with serve(lambda: heuristic, name="heuristic", api_key="k") as srv:
        client = RewarderClient(srv.url, api_key="k", encoding=encoding)
        assert isinstance(client, Rewarder)  # usable wherever an in-process rewarder is
        assert client.threshold == 0.5
        for task, goal in TASK_GOALS.items():
            for success in (True, False):
                frames = draw_scene(task, success, seed=7, n_frames=3)
                remote = client.score(frames, goal)
                local = heuristic.score(frames, goal)
                assert remote.success is local.success is success
                if encoding != "jpeg":  # lossless: the very same pixels
                    assert remote.score == pytest.approx(local.score, abs=1e-9)
                assert remote.details["task"] == task and remote.details["rewarder"] == "heuristic"
        # a whole clip as one (N, H, W, 3) array, and a batch
        clip = np.stack(draw_scene("lift", True, seed=8, n_frames=2))
        assert client.score(clip, TASK_GOALS["lift"]).success
        batch = client.score_batch([(clip, TASK_GOALS["lift"]), (draw_scene("lift", False, seed=9, n_frames=2), "lift")])
        assert [s.success for s in batch] == [True, False]
        client.close()


def test_client_errors(serve, heuristic):
    frame = draw_scene("push_left", True, seed=1)
    with serve(lambda: heuristic, api_key="k") as srv:
        with pytest.raises(RewarderError) as err:
            RewarderClient(srv.url, api_key="wrong").score(frame, TASK_GOALS["push_left"])
        assert err.value.status == 401 and err.value.code == "unauthorized"
        with pytest.raises(RewarderError) as err:
            RewarderClient(srv.url, api_key="k").score(frame, "make coffee")
        assert err.value.status == 422 and "make coffee" in err.value.message
        with pytest.raises(ValueError):
            RewarderClient(srv.url, api_key="k").score([], "lift")


def test_client_unreachable_is_connection_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RewarderClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01, timeout=2)
    with pytest.raises(ConnectionError, match="unreachable"):
        client.score(np.zeros((32, 32, 3), np.uint8), "lift")
