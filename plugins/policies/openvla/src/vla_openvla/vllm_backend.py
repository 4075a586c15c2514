"""The `openvla` policy through a vLLM server (``backend: vllm``) instead of transformers in-process.

vLLM (>= 0.32, PR #42654) registers ``OpenVLAForActionPrediction``; its OpenAI-compatible chat
API takes the camera image as an ``image_url`` data URL. OpenVLA has no chat template, so each
request carries one (``chat_template``, a vLLM extension) that renders just OpenVLA's prompt
followed by a space, which the Llama-2 tokenizer encodes as the empty token (29871) OpenVLA was
trained to see after "Out:". Greedy generation of ``action_dim`` tokens with
``return_tokens_as_token_ids`` (another vLLM extension: each logprobs entry's token is
``"token_id:N"``) gives the action token ids, which ``vla_openvla.actions`` decodes and
un-normalises exactly as the transformers backend does, with the statistics from the model's
``config.json`` (``norm_stats``, ``text_config.vocab_size``, ``pad_to_multiple_of``).

HTTP goes through vla's shared httpx client (retries with backoff on connection errors,
timeouts, 429 and 5xx). Every failure is one line naming the server and the cause.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from vla_openvla import actions as A
from vla_openvla.backend import OpenVLABackend
from vla_openvla.config import OpenVLAConfig

# Renders only the text part of the one user message: OpenVLA's prompt, then the empty token.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{% endfor %} "
)
TOKEN_ID_PREFIX = "token_id:"
RETRY_STATUSES = (429, 500, 502, 503, 504)


class VLLMError(RuntimeError):
    """The vLLM server could not give an action; the message is one line."""


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_model_config(model: str, revision: str | None = None) -> dict:
    """The model's config.json, from a folder or the hub (the hub's cache, HF_HOME, when offline)."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise VLLMError(f"{folder} holds no config.json (the OpenVLA model's action statistics)")
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "config.json", revision=revision))
        except Exception as exc:
            raise VLLMError(f"cannot read config.json of {model!r}: {one_line(exc)}") from None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VLLMError(f"{path}: not a readable JSON file ({one_line(exc)})") from None


class OpenVLAVLLMBackend(OpenVLABackend):
    """OpenVLABackend whose model is a vLLM server; prompt, decoding and un-normalisation are shared."""

    def __init__(self, config: OpenVLAConfig):
        super().__init__(config)
        self.served = config.served_model_name or config.model
        self._client = None

    # ------------------------------------------------------------------ setup
    def _load(self) -> None:
        if self._client is not None:
            return
        from vla.service.httpclient import Retry, make_client

        cfg = read_model_config(self.config.model, self.config.revision)
        try:
            vocab = cfg["text_config"]["vocab_size"]
        except (KeyError, TypeError):
            raise VLLMError(f"config.json of {self.config.model!r} has no text_config.vocab_size") from None
        self._stats = A.select_action_stats(cfg.get("norm_stats"), self.config.unnorm_key)
        self._action_dim = len(self._stats["q01"]) if self._stats is not None else 7
        self._vocab_size = A.action_vocab_size(vocab, cfg.get("pad_to_multiple_of", 0))
        api_key = self.config.api_key if self.config.api_key is not None else os.environ.get("VLLM_API_KEY")
        self._client = make_client(
            self.config.vllm_url.rstrip("/") + "/", api_key=api_key, auth_scheme="Bearer", timeout=self.config.timeout_s,
            connect_timeout=min(5.0, self.config.timeout_s),
            retry=Retry(attempts=self.config.retries + 1, statuses=RETRY_STATUSES),
        )
        served = [m.get("id") for m in self._call("GET", "models").get("data", [])]
        if self.served not in served:
            raise VLLMError(f"the vLLM server at {self.config.vllm_url} does not serve {self.served!r}; it serves "
                            f"{', '.join(map(str, served)) or 'nothing'}. Set plugins.openvla.served_model_name")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        from vla.service.httpclient import ServiceUnreachable

        url = self.config.vllm_url.rstrip("/") + "/" + path
        try:
            response = self._client.request(method, path, json=body)
        except ServiceUnreachable as exc:
            raise VLLMError(f"the vLLM server at {self.config.vllm_url} is unreachable after {exc.attempts} "
                            f"attempt(s): {one_line(exc.cause) or type(exc.cause).__name__}") from None
        if response.status_code != 200:
            try:
                err = response.json()
                err = err.get("error", err) if isinstance(err, dict) else {}
                message = err.get("message") or response.text
            except ValueError:
                message = response.text
            raise VLLMError(f"{url} answered HTTP {response.status_code}: {one_line(message) or '(empty body)'}")
        try:
            return response.json()
        except ValueError:
            raise VLLMError(f"{url} answered 200 with a body that is not JSON") from None

    # ------------------------------------------------------------------ one action
    def request_body(self, image, task: str) -> dict:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        return {
            "model": self.served,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": A.prompt(task, self.config.lowercase_instruction)},
            ]}],
            "chat_template": CHAT_TEMPLATE,
            "add_generation_prompt": False,
            "max_tokens": self._action_dim,
            "min_tokens": self._action_dim,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": 0,
            "return_tokens_as_token_ids": True,
            "skip_special_tokens": False,
        }

    def action_tokens(self, reply: dict) -> np.ndarray:
        try:
            content = reply["choices"][0]["logprobs"]["content"]
            tokens = [entry["token"] for entry in content]
        except (KeyError, IndexError, TypeError):
            raise VLLMError(f"{self.config.vllm_url} answered without per-token logprobs (is it vLLM >= 0.32?)") from None
        if len(tokens) != self._action_dim or not all(isinstance(t, str) and t.startswith(TOKEN_ID_PREFIX) for t in tokens):
            raise VLLMError(f"{self.config.vllm_url} returned {len(tokens)} token(s) {tokens[:8]!r}, expected "
                            f"{self._action_dim} '{TOKEN_ID_PREFIX}N' entries (return_tokens_as_token_ids)")
        return np.array([int(t[len(TOKEN_ID_PREFIX):]) for t in tokens], dtype=np.int64)

    def _predict(self, image, task: str) -> np.ndarray:
        if not task.strip():
            raise ValueError("OpenVLA needs a task instruction (the observation's 'task')")
        reply = self._call("POST", "chat/completions", self.request_body(image, task))
        tokens = self.action_tokens(reply)
        return A.decode_actions(tokens, self._vocab_size, self._stats).reshape(1, self._action_dim)

    def info(self):
        out = super().info()
        out.extra["backend"] = "vllm"
        return out


def make_backend(config: OpenVLAConfig | None = None, **_: Any):
    """The backend ``config.backend`` names."""
    config = config or OpenVLAConfig()
    if config.backend == "vllm":
        return OpenVLAVLLMBackend(config)
    if config.backend != "transformers":
        raise ValueError(f"plugins.openvla.backend must be 'transformers' or 'vllm', got {config.backend!r}")
    return OpenVLABackend(config)
