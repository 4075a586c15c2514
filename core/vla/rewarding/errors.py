"""Errors the rewarder service and its client share. Each carries a stable code and an HTTP status."""

from __future__ import annotations


class RewarderError(Exception):
    """A request the rewarder could not serve. ``code`` is stable; ``message`` names the problem."""

    status = 500

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        if status is not None:
            self.status = status

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(RewarderError):
    """Malformed input: the client must change its request (HTTP 400)."""

    status = 400


class TooLarge(RewarderError):
    """A body, an image or a clip over the service's limits (HTTP 413)."""

    status = 413


class BackendError(RewarderError):
    """The rewarder's backend (a VLM server, a model) failed; the request may be retried (HTTP 502)."""

    status = 502
