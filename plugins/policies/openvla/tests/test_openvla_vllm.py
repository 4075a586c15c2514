"""The `openvla` policy's vLLM backend (``backend: vllm``) against a stand-in of vLLM's chat API.

Why a stand-in and not vLLM's CPU build (which the qwen-vl tests run for real): vLLM 0.32's
``OpenVLAForActionPrediction`` accepts only openvla-7b's own vision tower: it refuses any
``timm_model_ids`` other than ``vit_large_patch14_reg4_dinov2.lvd142m`` +
``vit_so400m_patch14_siglip_224`` and any image size but 224, and fixes the fused feature width
at 2176. A "tiny" OpenVLA would still carry those two towers, ~0.7 B parameters (2.9 GB in
float32) of random weights, a download of timm and seconds per action on two cores: too big for
CI. So ``StandInVLLM`` speaks the part of vLLM's OpenAI API the backend uses, as
vllm/entrypoints/openai/chat_completion/protocol.py defines it: ``GET /v1/models`` (ModelList),
``POST /v1/chat/completions`` with an ``image_url`` data URL, the request-level
``chat_template``, ``return_tokens_as_token_ids`` (logprobs tokens ``"token_id:N"``) and
vLLM's ``{"error": {...}}`` bodies. Its "model" picks each action token from the pixels, so the
expected action is known from the plugin's own de-tokenisation formulas.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from vla_openvla import actions as A
from vla_openvla.config import OpenVLAConfig
from vla_openvla.vllm_backend import CHAT_TEMPLATE, OpenVLAVLLMBackend, VLLMError, make_backend

VOCAB = 32000
BRIDGE = {"action": {"q01": [-0.03, -0.04, -0.03, -0.1, -0.1, -0.2, 0.0],
                     "q99": [0.03, 0.04, 0.03, 0.1, 0.1, 0.2, 1.0],
                     "mask": [True, True, True, True, True, True, False]}}
SERVED = "openvla-7b"


def tokens_for(image: np.ndarray) -> list[int]:
    """The stand-in's answer: one bin per action dimension, from the mean of each image column band."""
    bands = np.array_split(image.mean(axis=2), 7, axis=1)
    return [VOCAB - 1 - int(band.mean()) for band in bands]


class StandInVLLM:
    def __init__(self, served=SERVED):
        self.served, self.requests, self.fail_next = served, [], 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status, message, kind):
                self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})

            def do_GET(self):
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": outer.served, "object": "model",
                                                                       "owned_by": "vllm", "max_model_len": 2048}]})
                self._error(404, "Not Found", "NotFoundError")

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                if outer.fail_next:
                    outer.fail_next -= 1
                    return self._error(503, "engine busy", "ServiceUnavailableError")
                if body["model"] != outer.served:
                    return self._error(404, f"The model `{body['model']}` does not exist.", "NotFoundError")
                [image_part] = [p for p in body["messages"][0]["content"] if p["type"] == "image_url"]
                raw = base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1])
                ids = tokens_for(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))[: body["max_tokens"]]
                token = (lambda i: f"token_id:{i}") if body.get("return_tokens_as_token_ids") else (lambda i: f"<{i}>")
                content = [{"token": token(i), "logprob": -0.01, "bytes": None, "top_logprobs": []} for i in ids]
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": outer.served,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                                              "logprobs": {"content": content}, "finish_reason": "length"}],
                                 "usage": {"prompt_tokens": 300, "completion_tokens": len(ids), "total_tokens": 307}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "architectures": ["OpenVLAForActionPrediction"], "text_config": {"vocab_size": VOCAB + 64},
        "pad_to_multiple_of": 64, "norm_stats": {"bridge_orig": BRIDGE}}))
    return tmp_path


def backend(url, model_dir, **kw):
    return make_backend(OpenVLAConfig(**{"backend": "vllm", "vllm_url": url, "model": str(model_dir),
                                         "served_model_name": SERVED, "retries": 1, "timeout_s": 5.0, **kw}))


def obs(image, task="Lift the Yellow Cube"):
    return {"observation.images.front": image, "task": task}


def test_actions_come_from_the_returned_token_ids_decoded_like_the_transformers_backend(model_dir):
    rng = np.random.default_rng(0)
    with StandInVLLM() as vllm:
        b = backend(vllm.url, model_dir)
        assert isinstance(b, OpenVLAVLLMBackend) and b.info().extra["backend"] == "vllm"
        for _ in range(3):
            image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
            (chunk,) = b.infer([obs(image)])
            expected = A.unnormalize(A.tokens_to_normalized(np.array(tokens_for(image)), VOCAB), BRIDGE["action"])
            assert chunk.shape == (1, 7) and chunk.dtype == np.float32
            np.testing.assert_allclose(chunk[0], expected, rtol=1e-6)
        request = vllm.requests[-1]
        assert request["model"] == SERVED and request["max_tokens"] == 7 and request["temperature"] == 0.0
        assert request["return_tokens_as_token_ids"] is True and request["chat_template"] == CHAT_TEMPLATE
        text = [p["text"] for p in request["messages"][0]["content"] if p["type"] == "text"]
        assert text == ["In: What action should the robot take to lift the yellow cube?\nOut:"]


def test_the_chat_template_renders_openvlas_prompt_and_the_empty_token():
    jinja2 = pytest.importorskip("jinja2")
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}},
                                             {"type": "text", "text": A.prompt("lift")}]}]
    rendered = jinja2.Environment().from_string(CHAT_TEMPLATE).render(messages=messages)
    assert rendered == "In: What action should the robot take to lift?\nOut: "  # the space: Llama-2's token 29871


def test_one_line_errors_for_a_wrong_model_a_busy_server_and_no_server(model_dir):
    with StandInVLLM(served="other") as vllm:
        with pytest.raises(VLLMError, match=r"does not serve 'openvla-7b'; it serves other\. Set plugins.openvla"):
            backend(vllm.url, model_dir).infer([obs(np.zeros((224, 224, 3), np.uint8))])
    with StandInVLLM() as vllm:
        b = backend(vllm.url, model_dir)
        vllm.fail_next = 1  # one 503 is retried
        b.infer([obs(np.zeros((224, 224, 3), np.uint8))])
        vllm.fail_next = 5
        with pytest.raises(VLLMError) as err:
            b.infer([obs(np.zeros((224, 224, 3), np.uint8))])
        assert "HTTP 503: engine busy" in str(err.value) and "\n" not in str(err.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(VLLMError, match=rf"127.0.0.1:{port}/v1 is unreachable after 2 attempt\(s\)"):
        backend(f"http://127.0.0.1:{port}/v1", model_dir).infer([obs(np.zeros((224, 224, 3), np.uint8))])


def test_bad_settings_are_named(model_dir, tmp_path):
    with pytest.raises(ValueError, match="backend must be 'transformers' or 'vllm'"):
        make_backend(OpenVLAConfig(backend="tgi"))
    with StandInVLLM() as vllm:
        (tmp_path / "empty").mkdir()
        with pytest.raises(VLLMError, match="holds no config.json"):
            backend(vllm.url, tmp_path / "empty").infer([obs(np.zeros((224, 224, 3), np.uint8))])
        with pytest.raises(Exception, match="unnorm_key 'libero' is not in the model's statistics"):
            backend(vllm.url, model_dir, unnorm_key="libero").infer([obs(np.zeros((224, 224, 3), np.uint8))])
