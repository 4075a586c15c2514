"""What a check says, and the report they make together (the stable ``--json`` output).

Every check has a fixed ``name``, a ``status`` (pass, warn, fail, skip), a one-line ``summary``
a person reads, and ``numbers``: the figures behind the verdict, JSON-ready, under keys that
stay the same from one release to the next (the README documents them). A skip is not a pass:
it says which input was missing, so a lab sees what was not checked.
"""

from __future__ import annotations

from typing import Any

import attrs

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)
SCHEMA = "vla.doctor/1"
_RANK = {SKIP: 0, PASS: 1, WARN: 2, FAIL: 3}


@attrs.frozen
class Check:
    name: str
    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    summary: str
    numbers: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "numbers": _plain(self.numbers)}


def worst(statuses) -> str:
    """The status that decides: fail over warn over pass over skip."""
    return max(statuses, key=_RANK.__getitem__, default=SKIP)


@attrs.define
class MatchReport:
    checks: list[Check]
    dataset: dict[str, Any]
    checkpoint: dict[str, Any] | None
    deployment: dict[str, Any]
    artifacts: dict[str, Any] = attrs.field(factory=dict, repr=False)  # pictures for the HTML page, never JSON

    @property
    def status(self) -> str:
        ran = [c.status for c in self.checks if c.status != SKIP]
        return worst(ran) if ran else SKIP

    @property
    def exit_code(self) -> int:
        """0 when no check failed (warnings allowed), 1 when one did."""
        return 1 if any(c.status == FAIL for c in self.checks) else 0

    def get(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r} (checks: {', '.join(c.name for c in self.checks)})")

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "status": self.status,
            "exit_code": self.exit_code,
            "counts": {s: sum(c.status == s for c in self.checks) for s in STATUSES},
            "dataset": _plain(self.dataset),
            "checkpoint": _plain(self.checkpoint),
            "deployment": _plain(self.deployment),
            "checks": [c.to_json() for c in self.checks],
        }


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, tuples and paths as JSON values; floats rounded to 6 digits."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, float):
        return round(value, 6) if value == value and abs(value) != float("inf") else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
