"""Dataset names as labs write them: ``YYYYMMDD_task_armID_runID``.

Underscores separate the four fields, so each field is slugified to lowercase letters,
digits and hyphens: ``pick_place`` becomes ``pick-place`` and the name still splits cleanly.
"""

from __future__ import annotations

import datetime as _dt
import re

_NON_SLUG = re.compile(r"[^a-z0-9]+")
_NAME_RE = re.compile(r"^(\d{8})_([a-z0-9-]+)_([a-z0-9-]+)_([a-z0-9-]+)$")
MAX_FIELD_LEN = 48


def slugify(text: str, field: str = "value") -> str:
    """Lowercase ``text`` and turn every run of other characters into one hyphen."""
    if not isinstance(text, str):
        raise ValueError(f"{field}: expected text, got {text!r}")
    slug = _NON_SLUG.sub("-", text.lower()).strip("-")[:MAX_FIELD_LEN].strip("-")
    if not slug:
        raise ValueError(f"{field}: {text!r} has no letters or digits to name a dataset with")
    return slug


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A run id from the local time of day (``HHMMSS``); the date is already in the name."""
    return (now or _dt.datetime.now()).strftime("%H%M%S")


def dataset_name(task: str, arm_id: str, run_id: str, date: _dt.date | None = None) -> str:
    day = (date or _dt.date.today()).strftime("%Y%m%d")
    return "_".join((day, slugify(task, "task"), slugify(arm_id, "arm_id"), slugify(run_id, "run_id")))


def parse_dataset_name(name: str) -> dict[str, str]:
    """Split a dataset name back into date, task, arm_id and run_id."""
    match = _NAME_RE.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a dataset name of the form YYYYMMDD_task_armID_runID")
    return dict(zip(("date", "task", "arm_id", "run_id"), match.groups()))
