"""The policy server over real loopback sockets: answers, health states, metrics, batching, errors."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import websockets

from vla.protocol import codec
from vla.protocol.borrowed import borrows
from vla.protocol.client import PolicyClient
from vla.protocol.errors import PolicyError
from vla.serving.server import PolicyServer
from vla.testing.policies import TimedPolicy, expected_chunk


class RecordingPolicy(TimedPolicy):
    """TimedPolicy that keeps the observations it was given."""

    keeps_inputs = True

    def __init__(self, config=None):
        super().__init__(config)
        self.seen: list[dict] = []

    def infer(self, batch):
        self.seen.extend(batch)
        return super().infer(batch)


def test_answers_carry_the_right_chunk_timings_and_echoes(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            assert client.metadata["protocol"] == "vla/1" and client.metadata["horizon"] == 10
            state = [0.1, -0.2, 0.3, 0.0, 0.5, 0.2]
            obs = helpers.observation(state) | {"timestamp": 123.25, "request_id": 77}
            reply = await client.infer(obs)
            np.testing.assert_allclose(reply["actions"], expected_chunk(state, horizon=10), atol=1e-6)
            assert reply["actions"].dtype == np.float32
            assert reply["request_id"] == 77 and reply["timestamp"] == 123.25
            timing = reply["server_timing"]
            assert timing["batch_size"] == 1 and timing["total_ms"] >= timing["infer_ms"] >= 0
            # RTC inputs reach the backend: the first d actions come from prev_chunk
            prev = np.full((10, 6), 0.25, np.float32)
            reply = await client.infer(helpers.observation(state) | {"inference_delay": 3, "prev_chunk": prev})
            np.testing.assert_allclose(reply["actions"][:3], prev[:3])
            np.testing.assert_allclose(reply["actions"][3:], expected_chunk(state, horizon=10)[3:], atol=1e-6)
            await client.close()

    run_async(scenario())


def test_jpeg_frames_are_decoded_to_rgb_for_the_backend(helpers, run_async):
    policy = RecordingPolicy(helpers.small_policy().config)

    async def scenario():
        async with PolicyServer(policy, port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url, jpeg_quality=95)
            obs = helpers.observation([0.0] * 6)
            front = np.zeros((48, 64, 3), np.uint8)
            front[..., 0] = 220  # pure red: a BGR/RGB mix-up would show in channel 2
            obs["observation.images.front"] = front
            reply = await client.infer(obs)
            np.testing.assert_allclose(reply["actions"], expected_chunk([0.0] * 6, horizon=10), atol=1e-6)
            seen = policy.seen[-1]["observation.images.front"]
            assert seen.shape == (48, 64, 3) and seen.dtype == np.uint8
            assert abs(float(seen[..., 0].mean()) - 220) < 5 and float(seen[..., 2].mean()) < 5
            await client.close()

    run_async(scenario())


def test_health_goes_starting_then_ready_and_waiting_clients_get_metadata(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(warmup_s=1.0), port=0) as server:
            status, content_type, body = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/healthz"))
            assert status == 503 and content_type == "application/json"
            assert json.loads(body)["status"] == "starting"
            # a client connecting now is held until the policy is ready, then gets the metadata
            client = await PolicyClient.connect(server.url, open_timeout=5)
            assert server.state == "ready" and client.metadata["policy"] == "timed"
            status, _, body = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/healthz"))
            assert status == 200 and json.loads(body)["status"] == "ready"
            await client.close()

    run_async(scenario())


def test_failed_warmup_is_reported_with_its_reason(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(fail_warmup=True), port=0) as server:
            assert await server.wait_settled(5) == "failed"
            status, _, body = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/healthz"))
            health = json.loads(body)
            assert status == 503 and health["status"] == "failed"
            assert "warm-up failed on purpose" in health["reason"]
            with pytest.raises(ConnectionError, match="failed to start"):
                await PolicyClient.connect(server.url)

    run_async(scenario())


def test_health_answers_while_a_model_call_runs(helpers, run_async):
    """The model runs in a worker thread: the event loop keeps serving HTTP during a 1.5 s call."""

    async def scenario():
        async with PolicyServer(helpers.small_policy(batch_cost_ms=1500), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            started = time.perf_counter()
            pending = asyncio.create_task(client.infer(helpers.observation([0.0] * 6)))
            await asyncio.sleep(0.3)  # the call is now running
            assert not pending.done()
            t0 = time.perf_counter()
            status, _, body = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/healthz"))
            health_s = time.perf_counter() - t0
            status_m, _, metrics = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/metrics"))
            assert status == 200 and json.loads(body)["status"] == "ready"
            assert status_m == 200 and 'vla_policy_connections{arm="unnamed",policy="timed"} 1.0' in metrics
            assert health_s < 0.5, f"health took {health_s:.3f}s during a model call"
            assert not pending.done(), "the model call should still be running"
            reply = await pending
            assert time.perf_counter() - started >= 1.4
            assert reply["server_timing"]["infer_ms"] >= 1400
            await client.close()

    run_async(scenario())


def test_backend_errors_become_error_frames_and_the_connection_goes_on(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(fail_task="explode"), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            with pytest.raises(PolicyError) as info:
                await client.infer(helpers.observation([0.0] * 6, task="explode"))
            assert info.value.code == "inference_failed" and "on purpose" in info.value.message
            reply = await client.infer(helpers.observation([0.3] * 6))
            np.testing.assert_allclose(reply["actions"], expected_chunk([0.3] * 6, horizon=10), atol=1e-6)
            await client.close()

    run_async(scenario())


def test_a_lone_client_of_a_fast_policy_skips_the_queue_and_keeps_every_check(helpers, run_async):
    """Once the backend's calls are trivially short, a lone client's requests are answered in the
    callback that delivered them: the same chunks, errors, resets and metrics as through the queue."""
    policy = RecordingPolicy(helpers.small_policy(fail_task="explode").config)

    async def scenario():
        async with PolicyServer(policy, port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            for i in range(20):
                state = [0.01 * i] * 6
                reply = await client.infer(helpers.observation(state))
                np.testing.assert_allclose(reply["actions"], expected_chunk(state, horizon=10), atol=1e-6)
            assert server.batcher.inline
            assert reply["server_timing"]["queue_ms"] == 0.0 and reply["server_timing"]["batch_size"] == 1
            with pytest.raises(PolicyError) as info:
                await client.infer(helpers.observation([0.0] * 6, task="explode"))
            assert info.value.code == "inference_failed"
            await client.infer(helpers.observation([0.2] * 6) | {"reset": True})
            assert policy.resets == 1
            reply = await client.infer(helpers.observation([0.3] * 6))
            np.testing.assert_allclose(reply["actions"], expected_chunk([0.3] * 6, horizon=10), atol=1e-6)
            body = server.metrics.render()[0].decode()
            assert 'vla_policy_batch_size_count{policy="timed"} 22.0' in body, body  # the failed call is no batch
            await client.close()

    run_async(scenario())


class WrongShapePolicy(TimedPolicy):
    def infer(self, batch):
        return [np.zeros((4, 5), np.float32) for _ in batch]


def test_a_policy_answering_the_wrong_shape_is_reported(helpers, run_async):
    async def scenario():
        async with PolicyServer(WrongShapePolicy(helpers.small_policy().config), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            with pytest.raises(PolicyError) as info:
                await client.infer(helpers.observation([0.0] * 6))
            assert info.value.code == "bad_policy_output"
            await client.close()

    run_async(scenario())


def test_reset_reaches_the_backend(helpers, run_async):
    policy = helpers.small_policy()

    async def scenario():
        async with PolicyServer(policy, port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            await client.infer(helpers.observation([0.0] * 6) | {"reset": True, "session": "arm-1"})
            await client.infer(helpers.observation([0.0] * 6))
            assert policy.resets == 1
            await client.close()

    run_async(scenario())


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(helpers, run_async):
    policy = helpers.small_policy(batch_cost_ms=80)

    async def arm(url, index, rounds):
        client = await PolicyClient.connect(url)
        sizes = []
        for r in range(rounds):
            state = [index + 0.01 * r, -index, 0.5, 0.0, 0.1 * index, r * 0.001]
            reply = await client.infer(helpers.observation(state, seed=index))
            np.testing.assert_allclose(reply["actions"], expected_chunk(state, horizon=10), atol=1e-5)
            sizes.append(reply["server_timing"]["batch_size"])
        await client.close()
        return sizes

    async def scenario():
        async with PolicyServer(policy, port=0, max_batch=4, max_wait_ms=20) as server:
            await server.wait_settled(5)
            results = await asyncio.gather(*(arm(server.url, i, 6) for i in range(4)))
            sizes = [s for arm_sizes in results for s in arm_sizes]
            # after the first rounds line up, the four arms share model calls
            assert max(sizes) == 4
            assert policy.calls <= 12, f"{policy.calls} calls for 24 requests: {policy.batch_sizes}"
            assert max(policy.batch_sizes) <= 4

    run_async(scenario())


def test_metrics_count_requests_errors_latency_and_batches(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            for _ in range(3):
                await client.infer(helpers.observation([0.0] * 6))
            for _ in range(2):
                with pytest.raises(PolicyError):
                    await client.infer({"observation.state": np.zeros(6, np.float32)})
            status, content_type, text = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/metrics"))
            await client.close()
        assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        assert samples['vla_policy_requests_total{arm="unnamed",code="ok",policy="timed",route="ws"}'] == 3
        assert samples['vla_policy_requests_total{arm="unnamed",code="missing_key",policy="timed",route="ws"}'] == 2
        assert samples['vla_policy_errors_total{arm="unnamed",code="missing_key",policy="timed"}'] == 2
        assert samples['vla_policy_request_seconds_count{arm="unnamed",policy="timed",route="ws"}'] == 3
        assert samples['vla_policy_request_seconds_bucket{arm="unnamed",le="+Inf",policy="timed",route="ws"}'] == 3
        assert samples['vla_policy_batch_size_bucket{le="1.0",policy="timed"}'] == 3
        assert samples['vla_policy_ready{policy="timed"}'] == 1
        assert "# TYPE vla_policy_infer_seconds histogram" in text

    run_async(scenario())


def test_plain_http_on_other_paths_is_not_a_crash(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0) as server:
            await server.wait_settled(5)
            status, _, _ = await asyncio.to_thread(helpers.http_get, helpers.http_url(server, "/nothing"))
            assert status in (400, 426)
            client = await PolicyClient.connect(server.url)
            await client.infer(helpers.observation([0.0] * 6))
            await client.close()

    run_async(scenario())


def test_messages_over_the_limit_close_the_connection_with_a_reason(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0, max_message_bytes=64 * 1024) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            obs = helpers.observation([0.0] * 6) | {"observation.environment_state": np.zeros(20000, np.float32)}
            with pytest.raises(ConnectionError, match="1009"):
                await client.infer(obs)
            other = await PolicyClient.connect(server.url)
            await other.infer(helpers.observation([0.0] * 6))
            await other.close()

    run_async(scenario())


def test_text_frames_get_an_error_frame(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(), port=0) as server:
            await server.wait_settled(5)
            async with websockets.connect(server.url) as ws:
                await ws.recv()
                await ws.send("hello")
                from vla.protocol.codec import decode

                reply = decode(await ws.recv())
                assert reply["error"]["code"] == "bad_frame"

    run_async(scenario())


def test_a_late_reply_to_an_abandoned_request_is_not_taken_for_the_next(helpers, run_async):
    async def scenario():
        async with PolicyServer(helpers.small_policy(batch_cost_ms=300), port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.infer(helpers.observation([0.5] * 6)), 0.1)
            reply = await client.infer(helpers.observation([-0.5] * 6))
            np.testing.assert_allclose(reply["actions"], expected_chunk([-0.5] * 6, horizon=10), atol=1e-6)
            await client.close()

    run_async(scenario())


def test_jpeg_per_camera_is_the_clients_choice(helpers, run_async):
    policy = RecordingPolicy(helpers.small_policy().config)

    async def scenario():
        async with PolicyServer(policy, port=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url, jpeg_quality={"wrist": 80})
            message = await client._prepare(helpers.observation([0.0] * 6))
            assert isinstance(message["observation.images.wrist"], bytes)
            assert isinstance(message["observation.images.front"], np.ndarray)
            obs = helpers.observation([0.0] * 6)
            await client.infer(obs)
            seen = policy.seen[-1]
            np.testing.assert_array_equal(seen["observation.images.front"], obs["observation.images.front"])  # raw: exact
            assert seen["observation.images.wrist"].shape == (24, 32, 3)
            await client.close()

    run_async(scenario())


def test_max_batch_never_exceeds_what_the_backend_declares(helpers, run_async):
    async def scenario():
        for requested, declared, expected in ((None, 3, 3), (2, 3, 2), (16, 3, 3)):
            policy = helpers.small_policy(max_batch=declared)
            async with PolicyServer(policy, port=0, max_batch=requested) as server:
                await server.wait_settled(5)
                assert server.metadata["max_batch"] == expected
                assert server.metadata["capabilities"]["batching"] is (expected > 1)

    run_async(scenario())


def test_one_arms_failing_observation_does_not_fail_the_arms_batched_with_it(helpers, run_async):
    """The policy raises for a whole batch when one observation is bad; the server retries each
    alone, so only the bad arm gets an error frame and the others get their own chunks."""
    policy = helpers.small_policy(batch_cost_ms=60, fail_task="explode")
    failing_batch_sizes = []
    infer = policy.infer

    def watched_infer(batch):
        if any(obs.get("task") == "explode" for obs in batch):
            failing_batch_sizes.append(len(batch))
        return infer(batch)

    policy.infer = watched_infer

    async def arm(url, index, task):
        client = await PolicyClient.connect(url)
        state = [0.1 * index, 0.0, 0.2, 0.0, 0.0, 0.0]
        try:
            reply = await client.infer(helpers.observation(state, task=task))
            return ("ok", reply["actions"], state)
        except PolicyError as exc:
            return ("error", exc.code, state)
        finally:
            await client.close()

    async def scenario():
        async with PolicyServer(policy, port=0, max_batch=4, max_wait_ms=50) as server:
            await server.wait_settled(5)
            # warm the batcher so all four count as active clients and line up together
            await asyncio.gather(*(arm(server.url, i, "fine") for i in range(4)))
            results = await asyncio.gather(*(arm(server.url, i, "explode" if i == 2 else "fine") for i in range(4)))
            for i, (kind, value, state) in enumerate(results):
                if i == 2:
                    assert (kind, value) == ("error", "inference_failed")
                else:
                    assert kind == "ok"
                    np.testing.assert_allclose(value, expected_chunk(state, horizon=10), atol=1e-5)
            # the bad observation first arrived in a shared batch, then alone
            assert failing_batch_sizes[0] > 1 and failing_batch_sizes[-1] == 1, failing_batch_sizes

    run_async(scenario())


def test_connections_over_the_cap_are_refused_with_503_and_the_others_go_on(helpers, run_async):
    import attrs
    import websockets

    from vla.service.limits import ServerLimits

    async def scenario():
        limits = attrs.evolve(ServerLimits(), max_connections=3)
        async with PolicyServer(helpers.small_policy(), port=0, limits=limits) as server:
            await server.wait_settled(5)
            clients = [await PolicyClient.connect(server.url, arm=f"arm{i}") for i in range(3)]
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(server.url)
            assert refused.value.response.status_code == 503
            for client in clients:  # the three keep being served
                reply = await client.infer(helpers.observation([0.0] * 6))
                assert reply["actions"].shape == (10, 6)
            assert server.metrics.value("errors_total", arm="unnamed", code="too_many_connections") == 1
            assert server.metrics.value("connections", arm="arm1") == 1
            await clients[0].close()
            await asyncio.sleep(0.1)
            late = await PolicyClient.connect(server.url)  # room again
            await late.close()
            for client in clients[1:]:
                await client.close()

    run_async(scenario())


class FrameMean(TimedPolicy):
    """Answers each observation with its front frame's mean in every action, and notes whether
    the frame was a view of the received bytes (a bool: it keeps no array, as it promises)."""

    keeps_inputs = False

    def __init__(self, config=None):
        super().__init__(config)
        self.borrowed: list[bool] = []

    def infer(self, batch):
        super().infer(batch)
        out = []
        for obs in batch:
            frame = obs["observation.images.front"]
            self.borrowed.append(borrows(frame))
            out.append(np.full((self.config.horizon, 6), float(frame.mean()), np.float32))
        return out


def _frame_of(value: int, shape) -> np.ndarray:
    frame = np.full(shape, value, np.uint8)
    frame[0, 0, 0] = 255 - value  # not one value everywhere: a stale or mixed frame shows in the mean
    return frame


def test_a_fast_policy_reads_frames_in_place_and_requests_that_wait_keep_their_own(helpers, run_async):
    """A lone client of an inline policy that keeps nothing is answered from views of the read
    buffer; requests that have to wait (another arm active, requests pipelined on one connection)
    are copied first, so frames arriving after them in the same buffer cannot change them."""
    policy = FrameMean(helpers.small_policy(fail_task="explode").config)
    shape = tuple(helpers.SMALL_CAMERAS["front"])

    def expected(value):
        return float(_frame_of(value, shape).mean())

    async def scenario():
        async with PolicyServer(policy, port=0, max_wait_ms=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            for i in range(24):
                obs = helpers.observation([0.0] * 6) | {"observation.images.front": _frame_of(i, shape)}
                reply = await client.infer(obs)
                np.testing.assert_allclose(reply["actions"], expected(i), rtol=1e-6)
            assert server.batcher.inline and server.borrow
            assert policy.borrowed[-1], "the lone client's frames were copied"
            # a failed call is no broken promise, though its traceback (logged) holds the frame for a while
            with pytest.raises(PolicyError):
                await client.infer(helpers.observation([0.0] * 6, task="explode"))
            assert server.borrow

            # another arm active: requests go through the queue; one connection pipelines eight
            await client.infer(helpers.observation([0.0] * 6))
            async with websockets.connect(server.url, max_size=None) as ws:
                codec.decode_map(await ws.recv())  # the metadata
                values = [10 * k + 3 for k in range(8)]
                for k, value in enumerate(values):
                    obs = helpers.observation([0.0] * 6) | {"observation.images.front": _frame_of(value, shape),
                                                            "request_id": k}
                    await ws.send(bytes(codec.encode(obs)))
                for k, value in enumerate(values):
                    reply = codec.decode_map(await ws.recv())
                    assert reply["request_id"] == k
                    np.testing.assert_allclose(reply["actions"], expected(value), rtol=1e-6)
            assert not all(policy.borrowed[-8:]), "waiting requests were not copied"
            await client.close()

    run_async(scenario())


class Hoarder(FrameMean):
    """Promises to keep nothing, and keeps every frame."""

    def __init__(self, config=None):
        super().__init__(config)
        self.kept: list[np.ndarray] = []

    def infer(self, batch):
        self.kept.extend(obs["observation.images.front"] for obs in batch)
        return super().infer(batch)


def test_a_policy_that_breaks_its_promise_is_named_and_gets_copies_from_then_on(helpers, run_async, caplog):
    policy = Hoarder(helpers.small_policy().config)

    async def scenario():
        async with PolicyServer(policy, port=0, max_wait_ms=0) as server:
            await server.wait_settled(5)
            client = await PolicyClient.connect(server.url)
            for i in range(30):
                await client.infer(helpers.observation([0.01 * i] * 6, seed=i))
            assert not server.borrow
            first = policy.borrowed.index(True)
            assert policy.borrowed[first + 1:] == [False] * (len(policy.borrowed) - first - 1)
            await client.close()

    with caplog.at_level("ERROR", logger="vla.serving"):
        run_async(scenario())
    assert any("keeps_inputs=False" in r.getMessage() and "timed" in r.getMessage() for r in caplog.records)
