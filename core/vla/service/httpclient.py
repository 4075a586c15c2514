"""The one HTTP client of vla: httpx with one retry and backoff rule.

    with make_client("http://gpu-host:18080", api_key=key, arm="arm01") as client:
        response = client.request("POST", "/score", json=body)

Connection errors, timeouts and the retry statuses (502, 503, 504 by default) are retried with
exponential backoff and jitter, honouring ``Retry-After``. After the last attempt a response
is returned as it is (a 503 is still an answer the caller reads and reports); a transport
error becomes ``ServiceUnreachable``, whose message names the URL and the cause.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import attrs

from vla.service.metrics import ARM_HEADER


class ServiceUnreachable(ConnectionError):
    def __init__(self, url: str, cause: BaseException, attempts: int):
        self.url, self.cause, self.attempts = url, cause, attempts
        detail = str(cause).strip() or type(cause).__name__
        super().__init__(f"{url} is unreachable after {attempts} attempt(s): {type(cause).__name__}: {detail}")


@attrs.frozen
class Retry:
    attempts: int = 3  # tries in all, the first included
    backoff_s: float = 0.25  # wait before the second try; doubles each time
    max_backoff_s: float = 4.0
    statuses: tuple[int, ...] = (502, 503, 504)
    jitter: float = 0.1  # +- share of each wait, so many clients do not retry in step

    def wait_s(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before try ``attempt`` + 1 (``attempt`` counts from 1)."""
        if retry_after:
            try:
                return min(max(0.0, float(retry_after)), self.max_backoff_s)
            except ValueError:
                pass
        base = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def after_error(self, attempt: int, error: BaseException, url: str) -> float:
        """The wait before the next try after a transport error; raises on the last try."""
        if attempt >= self.attempts:
            raise ServiceUnreachable(url, error, attempt) from None
        return self.wait_s(attempt)

    def after_response(self, attempt: int, response) -> float | None:
        """The wait before the next try, or None: this response is the answer."""
        if response.status_code in self.statuses and attempt < self.attempts:
            return self.wait_s(attempt, response.headers.get("Retry-After"))
        return None


NO_RETRY = Retry(attempts=1)


def _headers(api_key: str | None, arm: str | None, auth_scheme: str, extra: dict[str, str] | None) -> dict[str, str]:
    from vla import __version__

    headers = {"User-Agent": f"vla/{__version__}"}
    if api_key:
        headers["Authorization"] = f"{auth_scheme} {api_key}"
    if arm:
        headers[ARM_HEADER] = arm
    headers.update(extra or {})
    return headers


def _verify(verify: bool | str):
    """httpx's ``verify``: True (system CA store), False, or an SSLContext for a CA file."""
    if isinstance(verify, str):
        from vla.service.net import client_ssl_context

        return client_ssl_context(verify)
    return verify


class _Retrying:
    def __init__(self, client, retry: Retry):
        self.http = client  # the httpx client, for what the wrapper does not pass on
        self.retry = retry

    @property
    def base_url(self) -> str:
        return str(self.http.base_url)


class RetryingClient(_Retrying):
    """httpx.Client plus the retry rule. ``request`` takes httpx's arguments."""

    def request(self, method: str, url: str, **kwargs: Any):
        import httpx

        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                time.sleep(self.retry.after_error(attempt, exc, str(self.http.base_url.join(url))))
                continue
            wait = self.retry.after_response(attempt, response)
            if wait is None:
                return response
            response.close()
            time.sleep(wait)
        raise AssertionError("Retry.attempts must be at least 1")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RetryingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncRetryingClient(_Retrying):
    """httpx.AsyncClient plus the retry rule."""

    async def request(self, method: str, url: str, **kwargs: Any):
        import httpx

        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = await self.http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                await asyncio.sleep(self.retry.after_error(attempt, exc, str(self.http.base_url.join(url))))
                continue
            wait = self.retry.after_response(attempt, response)
            if wait is None:
                return response
            await response.aclose()
            await asyncio.sleep(wait)
        raise AssertionError("Retry.attempts must be at least 1")

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncRetryingClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


_DEFAULTS = dict(api_key=None, arm=None, timeout=30.0, connect_timeout=5.0, verify=True, auth_scheme="Api-Key",
                 headers=None, max_connections=16)


def _client_kwargs(base_url, api_key, arm, timeout, connect_timeout, verify, auth_scheme, headers, max_connections) -> dict:
    import httpx

    return dict(
        base_url=base_url,
        headers=_headers(api_key, arm, auth_scheme, headers),
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        verify=_verify(verify),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,  # a lab's HTTP(S)_PROXY is for the internet, not for the GPU host on the LAN
    )


def make_client(
    base_url: str,
    *,
    api_key: str | None = None,
    arm: str | None = None,
    timeout: float = 30.0,
    connect_timeout: float = 5.0,
    verify: bool | str = True,
    retry: Retry | None = None,
    auth_scheme: str = "Api-Key",
    headers: dict[str, str] | None = None,
    max_connections: int = 16,
) -> RetryingClient:
    """A synchronous client for ``base_url``; ``verify`` is True, False or a CA file (PEM)."""
    import httpx

    kwargs = _client_kwargs(base_url, api_key, arm, timeout, connect_timeout, verify, auth_scheme, headers, max_connections)
    return RetryingClient(httpx.Client(**kwargs), retry or Retry())


def make_async_client(base_url: str, **options: Any) -> AsyncRetryingClient:
    """The asyncio twin of ``make_client``, with the same options."""
    import httpx

    retry = options.pop("retry", None) or Retry()
    known = ("api_key", "arm", "timeout", "connect_timeout", "verify", "auth_scheme", "headers", "max_connections")
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"make_async_client() got unexpected options {unknown}")
    settings = {**_DEFAULTS, **options}
    kwargs = _client_kwargs(base_url, *(settings[k] for k in known))
    return AsyncRetryingClient(httpx.AsyncClient(**kwargs), retry)
