"""API keys: one parser for the headers clients send, one constant-time check.

Clients send ``Authorization: Api-Key K`` (what openpi-client sends) or ``Authorization:
Bearer K`` (what OpenAI-style clients send). A missing and a wrong key are told apart in the
message only; the comparison itself is ``hmac.compare_digest``, whose time does not depend on
where the keys differ.
"""

from __future__ import annotations

import hmac

SCHEMES = ("api-key", "bearer")
HINT = "send 'Authorization: Api-Key <key>' or 'Authorization: Bearer <key>'"
MISSING, WRONG = "missing API key", "wrong API key"
# Probes and scrapers carry no key; every other route needs it when one is configured.
OPEN_PATHS = frozenset({"/healthz", "/health", "/metrics"})


class Unauthorized(Exception):
    """The request's key is missing or wrong. ``reason`` is MISSING or WRONG."""

    code = "unauthorized"

    def __init__(self, reason: str):
        super().__init__(f"{reason}: {HINT}")
        self.reason = reason
        self.message = f"{reason}: {HINT}"


def parse_api_key(header: str | None) -> str | None:
    """The key in an ``Authorization`` header value, or None for none / another scheme."""
    if not header:
        return None
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() in SCHEMES and key:
        return key
    return None


class ApiKeyCheck:
    """The configured key (None or empty: no check) and the rule every server applies."""

    def __init__(self, key: str | None):
        self._key = key.encode("utf-8") if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, header: str | None) -> None:
        """Raise ``Unauthorized`` unless the header carries the key (or no key is configured)."""
        if self._key is None:
            return
        given = parse_api_key(header)
        if given is None:
            raise Unauthorized(MISSING)
        if not hmac.compare_digest(given.encode("utf-8"), self._key):
            raise Unauthorized(WRONG)

    def allows(self, header: str | None) -> bool:
        try:
            self.check(header)
        except Unauthorized:
            return False
        return True
