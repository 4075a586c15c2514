"""Asking an OpenAI-compatible chat-completions server (vLLM) for the first token's logprobs.

Request (POST {base_url}/chat/completions), as vLLM's ChatCompletionRequest accepts it:
  {"model": ..., "messages": [{"role": "user", "content": [
       {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}, ...,
       {"type": "text", "text": prompt}]}],
   "max_tokens": 1, "temperature": 0.0, "logprobs": true, "top_logprobs": K}
Reply: choices[0].logprobs.content[0].top_logprobs = [{"token", "logprob", "bytes"}, ...].
Errors: vLLM answers an unknown model with 404 and either {"error": {"message", "type",
"param", "code"}} (current ErrorResponse) or the older flat {"object": "error", "message",
"type", "param", "code"}; both are read.

Connection errors, timeouts, 429 and 5xx are retried with exponential backoff (vla's shared
httpx client); other 4xx are not. A prompt over the model's context (vLLM's 400) is
``request_too_long``. Every message is one line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

from vla.rewarding.errors import BackendError
from vla.service.httpclient import NO_RETRY, Retry, ServiceUnreachable, make_client

log = logging.getLogger("vla.qwen_vl")

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
# vLLM's 400 for a prompt longer than --max-model-len ("This model's maximum context length is
# 512 tokens. However, you requested 700 tokens ..."; newer releases word it "... is too long ...").
CONTEXT_RE = re.compile(r"maximum context length|max_model_len|is too long|exceeds the model", re.I)


def error_message(body: bytes) -> tuple[str, str | None]:
    """(message, type) from an OpenAI/vLLM error body, or the start of the raw body, on one line."""
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return one_line(body[:300].decode("utf-8", "replace")) or "(empty body)", None
    if isinstance(obj, dict):
        err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        message = err.get("message") or err.get("detail") or json.dumps(obj)[:300]
        return one_line(str(message)), err.get("type")
    return json.dumps(obj)[:300], None


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAIChatBackend:
    """Sends chat requests with images to ``base_url`` and returns the first token's top logprobs.

    HTTP goes through vla's shared client (vla.service.httpclient): one connection pool per
    backend, its retry rule (connection errors, timeouts, 408/429/5xx) with backoff."""

    thread_safe = True

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0,
                 retries: int = 3, backoff_s: float = 0.5, top_logprobs: int = 20):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get("VLLM_API_KEY")
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.top_logprobs = top_logprobs
        self._client = make_client(self.base_url + "/", api_key=self.api_key, auth_scheme="Bearer", timeout=timeout_s,
                                   connect_timeout=min(5.0, timeout_s), headers={"Accept": "application/json"},
                                   retry=Retry(attempts=retries + 1, backoff_s=backoff_s, max_backoff_s=max(4.0, backoff_s),
                                               statuses=RETRY_STATUSES))
        self._once_client = make_client(self.base_url + "/", api_key=self.api_key, auth_scheme="Bearer",
                                        timeout=min(10.0, timeout_s), connect_timeout=min(5.0, timeout_s),
                                        headers={"Accept": "application/json"}, retry=NO_RETRY)

    def close(self) -> None:
        self._client.close()
        self._once_client.close()

    # ------------------------------------------------------------------ HTTP
    def _unreachable(self, exc: ServiceUnreachable) -> BackendError:
        import httpx

        if isinstance(exc.cause, httpx.TimeoutException) and not isinstance(exc.cause, httpx.ConnectTimeout):
            return BackendError("backend_timeout", f"the VLM server at {self.base_url} is unavailable after "
                                                   f"{exc.attempts} attempt(s): no answer within {self.timeout_s:g}s")
        cause = str(exc.cause).strip() or type(exc.cause).__name__
        return BackendError("backend_unavailable", f"the VLM server at {self.base_url} is unavailable after "
                                                   f"{exc.attempts} attempt(s): cannot connect ({cause})")

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        url = self.base_url + path
        try:
            response = self._client.request(method, path.lstrip("/"), json=payload)
        except ServiceUnreachable as exc:
            raise self._unreachable(exc) from None
        status, body = response.status_code, response.content
        if status == 200:
            try:
                return json.loads(body)
            except json.JSONDecodeError:
                raise BackendError("bad_backend_reply", f"{url} answered 200 with a body that is not JSON") from None
        message, err_type = error_message(body)
        if status == 404 and ("model" in message.lower() or err_type == "NotFoundError"):
            raise BackendError("model_not_found", self._model_not_found(message))
        if status in RETRY_STATUSES:
            raise BackendError("backend_unavailable", f"the VLM server at {self.base_url} is unavailable after "
                                                      f"{self.retries + 1} attempt(s): HTTP {status}: {message}")
        if status in (401, 403):
            raise BackendError("backend_unauthorized", f"{url} refused the API key (HTTP {status}): {message}")
        if status == 400 and CONTEXT_RE.search(message):
            raise BackendError("request_too_long", f"{url}: the request does not fit the model's context ({message}); "
                                                   "send fewer or smaller frames (plugins.qwen-vl.max_frames, "
                                                   "max_side) or serve the model with a larger --max-model-len")
        raise BackendError("backend_rejected", f"{url} answered HTTP {status}: {message}")

    def _model_not_found(self, message: str) -> str:
        served = self.served_models(quiet=True)
        hint = f"; it serves {', '.join(served)}" if served else ""
        return (f"the VLM server at {self.base_url} does not serve model {self.model!r} ({message}){hint}. "
                "Set plugins.qwen-vl.model to the server's --served-model-name")

    def served_models(self, quiet: bool = False) -> list[str]:
        try:
            try:
                response = self._once_client.request("GET", "models")
            except ServiceUnreachable as exc:
                raise self._unreachable(exc) from None
            if response.status_code != 200:
                raise BackendError("backend_rejected", f"{self.base_url}/models answered HTTP {response.status_code}")
            return [m["id"] for m in response.json().get("data", [])]
        except Exception:
            if quiet:
                return []
            raise

    # ------------------------------------------------------------------ API
    def wait_ready(self, timeout_s: float) -> list[str]:
        """Poll /v1/models until the server answers (vLLM answers only once the model is loaded),
        and check that it serves our model."""
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while True:
            try:
                served = self.served_models()
                break
            except Exception as exc:
                last = exc
                if time.monotonic() >= deadline:
                    raise BackendError("backend_unavailable",
                                       f"the VLM server at {self.base_url} did not answer /models within "
                                       f"{timeout_s:g}s: {last}") from None
                time.sleep(min(2.0, max(0.05, timeout_s / 20)))
        if self.model not in served:
            raise BackendError("model_not_found",
                               f"the VLM server at {self.base_url} does not serve model {self.model!r}; it serves "
                               f"{', '.join(served) or 'nothing'}. Set plugins.qwen-vl.model to the server's "
                               "--served-model-name")
        return served

    def chat_request(self, image_urls: list[str], prompt: str, system_prompt: str | None = None) -> dict:
        content: list[dict] = [{"type": "image_url", "image_url": {"url": url}} for url in image_urls]
        content.append({"type": "text", "text": prompt})
        messages: list[dict] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": content})
        return {
            "model": self.model,
            "messages": messages,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    def first_token_top_logprobs(self, image_urls: list[str], prompt: str,
                                 system_prompt: str | None = None) -> tuple[list[tuple[str, float]], str]:
        """([(token, logprob), ...] for the first answer token, the answer text)."""
        reply = self.request("POST", "/chat/completions", self.chat_request(image_urls, prompt, system_prompt))
        try:
            choice = reply["choices"][0]
            answer = (choice.get("message") or {}).get("content") or ""
            logprobs = choice.get("logprobs")
            if not logprobs or not logprobs.get("content"):
                raise BackendError("no_logprobs", f"{self.base_url} returned no logprobs; does the server allow "
                                                  "them (vLLM: --max-logprobs >= top_logprobs)?")
            first = logprobs["content"][0]
            top = [(t["token"], float(t["logprob"])) for t in first.get("top_logprobs") or []]
            if not top:  # top_logprobs=0: only the sampled token
                top = [(first["token"], float(first["logprob"]))]
        except BackendError:
            raise
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BackendError("bad_backend_reply",
                               f"{self.base_url} answered without the chat-completions fields expected ({exc!r})") from None
        return top, answer
