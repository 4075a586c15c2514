"""The qwen-vl rewarder's OpenAI-API path against a local HTTP server that speaks vLLM's API.

vLLM itself needs a GPU, so ``FakeVLLM`` stands in for it, speaking exactly the schema of
vLLM's OpenAI-compatible server as defined in vllm-project/vllm
``vllm/entrypoints/openai/protocol.py``: ``ChatCompletionRequest`` (``logprobs``,
``top_logprobs`` checked as vLLM's ``check_logprobs`` validator does), ``ChatCompletionResponse``
/ ``ChatCompletionResponseChoice`` / ``ChatMessage`` / ``ChatCompletionLogProbs`` /
``ChatCompletionLogProbsContent`` / ``ChatCompletionLogProb`` (token, logprob, bytes,
top_logprobs), ``UsageInfo``, ``ModelList`` / ``ModelCard`` for ``GET /v1/models``, and
``ErrorResponse`` ``{"error": {"message", "type", "param", "code"}}`` — or, with
``legacy_errors``, the flat ``{"object": "error", "message", "type", "param", "code"}`` older
vLLM releases send — for an unknown model (404, "The model `x` does not exist.", NotFoundError)
and for bad requests (400, BadRequestError). The multimodal limit mirrors
``--limit-mm-per-prompt``.

Its "model" answers from the pixels: P(yes) is the fraction of bright pixels in the last image,
spread over the token variants "Yes", " yes" and "YES" (and P(no) over "No" and " no"), with
some mass on unrelated tokens, so the expected score is known exactly.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from vla.rewarding.client import RewarderClient
from vla.rewarding.errors import BackendError, RewarderError
from vla_qwen_vl.config import QwenVLConfig
from vla_qwen_vl.rewarder import QwenVLRewarder
from vla_qwen_vl.scoring import score_from_top_logprobs

SERVED = "Qwen/Qwen2.5-VL-7B-Instruct"
YES_SPLIT = {"Yes": 0.7, " yes": 0.2, "YES": 0.1}
NO_SPLIT = {"No": 0.8, " no": 0.2}
OTHER = {"The": 0.03, "I": 0.02}


def bright_fraction(image: np.ndarray) -> float:
    return float(np.clip((image.mean(axis=2) > 128).mean(), 0.02, 0.98))


def logprob_entry(token: str, p: float) -> dict:
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode())}


class FakeVLLM:
    def __init__(self, served=SERVED, max_images=4, max_logprobs=20, legacy_errors=False):
        self.served = served
        self.max_images = max_images
        self.max_logprobs = max_logprobs
        self.legacy_errors = legacy_errors
        self.fail_next = 0  # answer this many requests with 503 first
        self.delay_s = 0.0
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def error(self, status, message, err_type):
                info = {"message": message, "type": err_type, "param": None, "code": status}
                self.reply(status, {"object": "error", **info} if fake.legacy_errors else {"error": info})

            def do_GET(self):
                if self.path == "/v1/models":
                    card = {"id": fake.served, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                            "root": fake.served, "parent": None, "max_model_len": 16384, "permission": []}
                    self.reply(200, {"object": "list", "data": [card]})
                elif self.path == "/health":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.error(404, "Not Found", "NotFoundError")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fake.fail_next > 0:
                    fake.fail_next -= 1
                    return self.error(503, "The server is overloaded", "ServiceUnavailableError")
                if self.path != "/v1/chat/completions":
                    return self.error(404, "Not Found", "NotFoundError")
                if body.get("model") != fake.served:
                    return self.error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
                top_n = body.get("top_logprobs")
                if top_n is not None and not body.get("logprobs"):
                    return self.error(400, "when using `top_logprobs`, `logprobs` must be set to true.", "BadRequestError")
                if top_n is not None and top_n > fake.max_logprobs:
                    return self.error(400, f"Requested sample logprobs of {top_n}, which is greater than max allowed: {fake.max_logprobs}", "BadRequestError")
                images = []
                for message in body["messages"]:
                    content = message["content"]
                    for part in content if isinstance(content, list) else []:
                        if part["type"] == "image_url":
                            header, _, data = part["image_url"]["url"].partition(",")
                            assert header.startswith("data:image/") and header.endswith(";base64")
                            images.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")))
                if len(images) > fake.max_images:
                    return self.error(400, f"At most {fake.max_images} image(s) may be provided in one prompt.", "BadRequestError")
                p_yes = bright_fraction(images[-1]) if images else 0.5
                scale = 1.0 - sum(OTHER.values())
                probs = {**{t: p_yes * scale * s for t, s in YES_SPLIT.items()},
                         **{t: (1 - p_yes) * scale * s for t, s in NO_SPLIT.items()}, **OTHER}
                ranked = sorted(probs.items(), key=lambda kv: -kv[1])[: max(top_n or 0, 1)]
                first = ranked[0][0]
                self.reply(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": fake.served,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": first, "refusal": None, "annotations": None,
                                    "audio": None, "function_call": None, "tool_calls": [], "reasoning_content": None},
                        "logprobs": {"content": [{
                            **logprob_entry(first, probs[first]),
                            "top_logprobs": [logprob_entry(t, p) for t, p in ranked] if top_n else [],
                        }]} if body.get("logprobs") else None,
                        "finish_reason": "length",
                        "stop_reason": None,
                    }],
                    "service_tier": None,
                    "system_fingerprint": None,
                    "usage": {"prompt_tokens": 100 + 300 * len(images), "total_tokens": 101 + 300 * len(images),
                              "completion_tokens": 1, "prompt_tokens_details": None},
                    "prompt_logprobs": None,
                    "kv_transfer_params": None,
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def frame(bright: float, h=60, w=80) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    img[:, : int(round(bright * w))] = 230
    return img


def rewarder(url, **kw) -> QwenVLRewarder:
    defaults = dict(base_url=url, model=SERVED, retries=2, backoff_s=0.01, timeout_s=5.0, startup_timeout_s=2.0)
    return QwenVLRewarder(QwenVLConfig(**{**defaults, **kw}))


def test_score_is_p_yes_over_yes_and_no_and_request_matches_vllm_schema():
    with FakeVLLM() as vllm:
        r = rewarder(vllm.url, image_format="png", max_side=None)
        r.warmup()
        for bright in (0.25, 0.55, 0.9):
            score = r.score([frame(0.0), frame(bright)], "lift the yellow cube")
            assert score.score == pytest.approx(bright, abs=1e-9)
            assert score.success is (bright >= 0.5)
            assert score.details["p_yes"] + score.details["p_no"] == pytest.approx(0.95)
            assert score.details["answer"] == ("Yes" if bright * 0.7 > (1 - bright) * 0.8 else "No")
        request = vllm.requests[-1]
        assert request["model"] == SERVED and request["max_tokens"] == 1 and request["temperature"] == 0.0
        assert request["logprobs"] is True and request["top_logprobs"] == 20
        parts = request["messages"][-1]["content"]
        assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
        assert "lift the yellow cube" in parts[-1]["text"] and "2 frame(s)" in parts[-1]["text"]
        # a long clip is cut to max_frames (vLLM's --limit-mm-per-prompt), keeping the last frame
        clip = [frame(0.1)] * 9 + [frame(0.8)]
        assert r.score(clip, "lift").score == pytest.approx(0.8)
        assert sum(p["type"] == "image_url" for p in vllm.requests[-1]["messages"][-1]["content"]) == 4
        # over the server's limit: vLLM's 400 comes back as a clear, non-retried error
        n = len(vllm.requests)
        with pytest.raises(BackendError) as err:
            rewarder(vllm.url, max_frames=6).score(clip, "lift")
        assert err.value.code == "backend_rejected" and "At most 4 image(s)" in err.value.message
        assert len(vllm.requests) == n + 1


def test_custom_prompt_template_and_system_prompt():
    with FakeVLLM() as vllm:
        r = rewarder(vllm.url, prompt="Goal: {goal}. Done? ({n_frames} images)", system_prompt="Be strict.")
        r.score(frame(0.7), "push the green cube to the left of the line")
        messages = vllm.requests[-1]["messages"]
        assert messages[0] == {"role": "system", "content": "Be strict."}
        assert messages[1]["content"][-1]["text"] == "Goal: push the green cube to the left of the line. Done? (1 images)"
    with pytest.raises(ValueError, match="placeholders"):
        QwenVLRewarder(QwenVLConfig(prompt="Goal: {task}"))


def test_retries_then_succeeds():
    with FakeVLLM() as vllm:
        vllm.fail_next = 2
        assert rewarder(vllm.url, retries=2).score(frame(0.6), "lift").score == pytest.approx(0.6)
        assert len(vllm.requests) == 3
        vllm.fail_next = 5
        with pytest.raises(BackendError) as err:
            rewarder(vllm.url, retries=1).score(frame(0.6), "lift")
        assert err.value.code == "backend_unavailable" and "HTTP 503" in err.value.message and "2 attempt(s)" in err.value.message


@pytest.mark.parametrize("legacy", [False, True])
def test_wrong_model_name_is_named(legacy):
    with FakeVLLM(legacy_errors=legacy) as vllm:
        r = rewarder(vllm.url, model="qwen-vl-typo")
        with pytest.raises(BackendError) as err:
            r.score(frame(0.5), "lift")
        assert err.value.code == "model_not_found"
        assert "'qwen-vl-typo'" in err.value.message and f"it serves {SERVED}" in err.value.message
        assert "does not exist" in err.value.message
        assert len(vllm.requests) == 1  # not retried
        with pytest.raises(BackendError, match="does not serve model 'qwen-vl-typo'"):
            r.warmup()


def test_backend_down_and_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(BackendError) as err:
        rewarder(f"http://127.0.0.1:{port}/v1", retries=2).score(frame(0.5), "lift")
    assert err.value.code == "backend_unavailable" and f"127.0.0.1:{port}" in err.value.message
    assert "cannot connect" in err.value.message and time.monotonic() - start < 5
    with pytest.raises(BackendError, match="did not answer /models within"):
        rewarder(f"http://127.0.0.1:{port}/v1", startup_timeout_s=0.3).warmup()
    with FakeVLLM() as vllm:
        vllm.delay_s = 1.0
        with pytest.raises(BackendError) as err:
            rewarder(vllm.url, timeout_s=0.3, retries=1).score(frame(0.5), "lift")
        assert err.value.code == "backend_timeout" and "no answer within" in err.value.message


def test_through_the_service_errors_are_5xx_and_service_keeps_serving(serve):
    with FakeVLLM() as vllm:
        with serve(lambda: rewarder(vllm.url), name="qwen-vl") as srv:
            client = RewarderClient(srv.url, retries=0)
            assert client.score(frame(0.75), "lift the yellow cube").score == pytest.approx(0.75)
            vllm.fail_next = 10
            with pytest.raises(RewarderError) as err:
                client.score(frame(0.75), "lift the yellow cube")
            assert err.value.status == 502 and err.value.code == "backend_unavailable"
            vllm.fail_next = 0
            batch = client.score_batch([(frame(0.3), "lift"), (frame(0.9), "lift"), (frame(0.6), "lift")])
            assert [s.score for s in batch] == pytest.approx([0.3, 0.9, 0.6])
    # the model name is checked at start-up: the service reports failed with the reason
    with FakeVLLM() as vllm:
        with serve(lambda: rewarder(vllm.url, model="nope"), name="qwen-vl") as srv:
            health = RewarderClient(srv.url).health()
            assert health["status"] == "failed" and "does not serve model 'nope'" in health["reason"]


def test_token_variants():
    top = [("ĠYes", math.log(0.3)), ("yes.", math.log(0.1)), (" NO", math.log(0.2)), ("No", math.log(0.2)), ("Maybe", math.log(0.2))]
    score, figures = score_from_top_logprobs(top, ["yes"], ["no"])
    assert score == pytest.approx(0.4 / 0.8) and figures["p_other"] == pytest.approx(0.2)
    # "True"/"False" count when configured (TOPReward reads True)
    assert score_from_top_logprobs([("True", -0.1), ("False", -2.0)], ["yes", "true"], ["no", "false"])[0] > 0.8
    with pytest.raises(ValueError, match="neither a yes nor a no"):
        score_from_top_logprobs([("Maybe", -0.1), ("The", -1.0)], ["yes"], ["no"])
