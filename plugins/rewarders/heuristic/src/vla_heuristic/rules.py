"""Task rules for the heuristic rewarder, read from YAML.

Each rule turns frames into a *measure* with a cut-off, and the score is a logistic of
(measure - cut-off) / softness: 0.5 exactly at the cut-off, near 1 well past it. So the
rewarder's threshold of 0.5 means "the measure reached its cut-off", and calibration can
move the threshold without touching the rules.

Rules:
- ``inside``: the fraction of the object's pixels inside the container's filled region
  (convex hull of the container's colour, grown a little). Cut-off ``min_inside``.
- ``past_line``: how far the object is past a line, in fractions of the image width
  (or height for ``up``/``down``). The line is a fixed image coordinate (``line: {x: 0.5}``)
  or found by colour (``line: {colour: black}``: the longest thin structure of that colour,
  so the arm's dark servos are not taken for it, with a straight line fitted to it; looked
  for in the clip's first frame, where the arm hides least of the table).
  ``part: whole`` needs every object pixel past it; ``centroid`` only the centre. Cut-off ``margin``.
- ``raised``: how far the object rose in the image, in fractions of the image height: from its
  bottom edge in the first frame to the lowest pixel of its colour above that spot in the last
  frame (so an arm of the same colour holding it does not confuse the rule). A single frame is
  compared with ``table_y`` (where the bottom edge sits on the table) when that is set.
  Cut-off ``min_rise``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Union

import attrs
import numpy as np

from vla.config import ConfigError

from vla_heuristic.masks import Blob, HSVRange, colour_mask, filled_region, largest_blob, to_hsv

DEFAULT_RULES = Path(__file__).with_name("default_rules.yaml")
SIDES = ("left", "right", "up", "down")


class RulesError(ConfigError):
    """A rules file that cannot be used; the message names the file and the key."""


def normalise_goal(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def logistic(measure: float, cutoff: float, softness: float) -> float:
    z = (measure - cutoff) / softness
    if z < -60:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))


@attrs.frozen
class Scene:
    """One frame, converted once, with its colour masks computed on demand."""

    rgb: np.ndarray
    colours: dict[str, tuple[HSVRange, ...]]
    roi: tuple[float, float, float, float] | None
    hsv: np.ndarray = attrs.field(init=False)
    _masks: dict = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self):
        object.__setattr__(self, "hsv", to_hsv(self.rgb))

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    def mask(self, colour: str, open_px: int = 1) -> np.ndarray:
        """Pixels of ``colour``; ``open_px`` removes speckle (0 keeps lines a pixel or two wide)."""
        key = (colour, open_px)
        if key not in self._masks:
            self._masks[key] = colour_mask(self.hsv, self.colours[colour], self.roi, open_px)
        return self._masks[key]

    def min_area_px(self, fraction: float) -> int:
        return max(1, int(round(fraction * self.height * self.width)))


@attrs.frozen
class InsideRule:
    object: str
    container: str
    min_inside: float = 0.5
    grow: float = 0.01  # grow the container's region by this fraction of the image width
    softness: float = 0.08
    kind = "inside"

    def evaluate(self, scenes: list[Scene], min_area: float) -> tuple[float, dict]:
        scene = scenes[-1]
        blob = largest_blob(scene.mask(self.object), scene.min_area_px(min_area))
        if blob is None:
            return 0.0, {"reason": f"no {self.object} object visible", "measure": None}
        region = filled_region(scene.mask(self.container), scene.min_area_px(min_area),
                               int(round(self.grow * scene.width)))
        if region is None:
            return 0.0, {"reason": f"no {self.container} container visible", "measure": None,
                         "object": blob.as_details(scene.width, scene.height)}
        inside = float(np.count_nonzero(region & blob.mask)) / blob.area
        return logistic(inside, self.min_inside, self.softness), {
            "measure": round(inside, 4), "cutoff": self.min_inside,
            "object": blob.as_details(scene.width, scene.height),
            "container_area_px": int(np.count_nonzero(region)),
        }


def _one_of(allowed):
    def check(_inst, attribute, value):
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")

    return check


def _fraction(_inst, attribute, value):
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"expected a fraction of the image, 0..1, got {value!r}")


@attrs.frozen
class Line:
    """Where a past_line rule's line is: a fixed image coordinate or a colour to look for."""

    x: float | None = attrs.field(default=None, validator=_fraction)  # fraction of the width (for left/right)
    y: float | None = attrs.field(default=None, validator=_fraction)  # fraction of the height (for up/down)
    colour: str | None = None

    def __attrs_post_init__(self):
        if sum(v is not None for v in (self.x, self.y, self.colour)) != 1:
            raise ValueError("expected {x: fraction}, {y: fraction} or {colour: name}")


def _line_fits_side(inst, attribute, line):
    if line.x is not None and inst.side not in ("left", "right"):
        raise ValueError("a line at x needs side left or right")
    if line.y is not None and inst.side not in ("up", "down"):
        raise ValueError("a line at y needs side up or down")


@attrs.frozen
class PastLineRule:
    object: str
    line: Line = attrs.field(validator=_line_fits_side)
    side: str = attrs.field(default="left", validator=_one_of(SIDES))
    part: str = attrs.field(default="whole", validator=_one_of(("whole", "centroid")))
    margin: float = 0.0
    softness: float = 0.015
    line_width: float = 0.012  # a coloured line is at most this wide (fraction of the width)
    min_length: float = 0.2  # and at least this long (fraction of the larger image side)
    kind = "past_line"

    def _line(self, scene: Scene):
        """A function giving the line's position (pixels) along the measured axis, at a coordinate
        across it; None when a coloured line is not visible."""
        horizontal = self.side in ("left", "right")
        if self.line.colour is None:
            value = (self.line.x * scene.width) if horizontal else (self.line.y * scene.height)
            return lambda across: np.full(np.shape(across), value, float)
        import cv2

        from vla_heuristic.masks import longest_component, thin_structures

        thin = thin_structures(scene.mask(self.line.colour, open_px=0), max(1, round(self.line_width * scene.width)))
        line = longest_component(thin, int(self.min_length * max(scene.height, scene.width)))
        if line is None:
            return None
        ys, xs = np.nonzero(line)
        pts = np.column_stack([xs, ys]).astype(np.float32)
        vx, vy, x0, y0 = cv2.fitLine(pts, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        if horizontal:
            if abs(vy) < 1e-3:
                return None
            return lambda y: x0 + (np.asarray(y, float) - y0) * vx / vy
        if abs(vx) < 1e-3:
            return None
        return lambda x: y0 + (np.asarray(x, float) - x0) * vy / vx

    def evaluate(self, scenes: list[Scene], min_area: float) -> tuple[float, dict]:
        scene = scenes[-1]
        blob = largest_blob(scene.mask(self.object), scene.min_area_px(min_area))
        if blob is None:
            return 0.0, {"reason": f"no {self.object} object visible", "measure": None}
        # the line is painted on the table: find it where the arm hides least of it (the first frame)
        line = self._line(scenes[0]) or self._line(scene)
        if line is None:
            return 0.0, {"reason": f"no {self.line.colour} line visible", "measure": None,
                         "object": blob.as_details(scene.width, scene.height)}
        ys, xs = np.nonzero(blob.mask)
        if self.part == "centroid":
            xs, ys = np.array([blob.cx]), np.array([blob.cy])
        if self.side in ("left", "right"):
            gap = line(ys) - xs if self.side == "left" else xs - line(ys)
            scale = scene.width
        else:
            gap = line(xs) - ys if self.side == "up" else ys - line(xs)
            scale = scene.height
        # the least-past pixel decides for "whole"; one pixel is the object's far edge
        measure = float(np.min(gap)) / scale
        return logistic(measure, self.margin, self.softness), {
            "measure": round(measure, 4), "cutoff": self.margin,
            "object": blob.as_details(scene.width, scene.height),
        }


@attrs.frozen
class RaisedRule:
    """How far the object rose, from where it started to the lowest object-coloured pixel above
    its starting place in the last frame.

    Comparing the lowest pixel in the columns the object started in (not the object's own blob)
    keeps this working when the arm has the object's colour (the SO-101 is yellow, like the
    cube): a lifted cube merges with the gripper, and the bottom of that blob is the cube's.
    A cube that was knocked toward the camera shows lower (a negative rise); one that left its
    columns altogether leaves nothing to measure and fails. When the arm has the object's
    colour, an object-shaped blob standing apart in the last frame is one resting on the table
    (a cube pushed away from the camera looks higher without being lifted), and fails too.
    """

    object: str
    min_rise: float = 0.05  # fraction of the image height
    table_y: float | None = None  # single frames: the bottom edge's height on the table (fraction)
    softness: float = 0.015
    max_area: float = 0.01  # an object blob is at most this fraction of the image (bigger: an arm)
    band: float = 0.5  # search this many object widths either side of where it started
    kind = "raised"

    def _start(self, scene: Scene, min_area: float) -> Blob | None:
        from vla_heuristic.masks import compact_blobs

        mask = scene.mask(self.object)
        blobs = compact_blobs(mask, scene.min_area_px(min_area), scene.min_area_px(self.max_area))
        # the object rests on the table below (nearer the camera than) anything else of its colour
        return max(blobs, key=lambda b: b.y1) if blobs else None

    def evaluate(self, scenes: list[Scene], min_area: float) -> tuple[float, dict]:
        last = scenes[-1]
        if len(scenes) == 1:
            if self.table_y is None:
                raise ValueError("the 'raised' rule needs a clip of 2+ frames, or table_y set for single frames")
            blob = self._start(last, min_area) or largest_blob(last.mask(self.object), last.min_area_px(min_area))
            if blob is None:
                return 0.0, {"reason": f"no {self.object} object visible", "measure": None}
            rise = self.table_y - blob.y1 / last.height
            return logistic(rise, self.min_rise, self.softness), {
                "measure": round(rise, 4), "cutoff": self.min_rise, "reference": "table_y",
                "object": blob.as_details(last.width, last.height),
            }
        start = self._start(scenes[0], min_area)
        if start is None:
            return 0.0, {"reason": f"no separate {self.object} object in the first frame", "measure": None}
        pad = int(round(self.band * (start.x1 - start.x0)))
        x0, x1 = max(0, start.x0 - pad), min(last.width, start.x1 + pad)
        rows = np.nonzero(last.mask(self.object)[:, x0:x1].any(axis=1))[0]
        details = {"cutoff": self.min_rise, "reference": "first_frame",
                   "start": start.as_details(scenes[0].width, scenes[0].height)}
        if len(rows) == 0:
            return 0.0, {**details, "reason": f"nothing {self.object} above where the object started", "measure": None}
        rise = (start.y1 - (rows[-1] + 1)) / last.height
        # Only when the arm has the object's colour does a held object merge with it; then an
        # object-shaped blob on its own is one left on the table. With an arm of another colour
        # a held object is a blob on its own too, so that test would say nothing.
        resting = self._resting_copy(last, start, min_area) if self._arm_shares_colour(scenes[0]) else None
        if resting is not None:
            # the object lies apart from everything of its colour: it is on the table, not in a hand
            # (a cube pushed away from the camera looks higher without being lifted)
            return logistic(min(rise, 0.0), self.min_rise, self.softness), {
                **details, "measure": round(min(rise, 0.0), 4), "image_rise": round(rise, 4),
                "reason": f"the {self.object} object rests apart from the arm",
                "object": resting.as_details(last.width, last.height)}
        return logistic(rise, self.min_rise, self.softness), {**details, "measure": round(rise, 4)}

    def _arm_shares_colour(self, scene: Scene) -> bool:
        """Whether something much bigger than the object has its colour (an arm printed in it)."""
        import cv2

        count, _, stats, _ = cv2.connectedComponentsWithStats(scene.mask(self.object).astype(np.uint8), connectivity=8)
        return bool(count > 1 and stats[1:, cv2.CC_STAT_AREA].max() > scene.min_area_px(self.max_area))

    def _resting_copy(self, scene: Scene, start: Blob, min_area: float) -> Blob | None:
        """A blob in ``scene`` that looks like the object did at the start: similar area, compact."""
        from vla_heuristic.masks import compact_blobs

        lo, hi = int(start.area * 0.4), int(start.area * 2.0)
        w0, h0 = start.x1 - start.x0, start.y1 - start.y0
        mask = scene.mask(self.object)
        for blob in compact_blobs(mask, max(lo, scene.min_area_px(min_area)), hi):
            w, h = blob.x1 - blob.x0, blob.y1 - blob.y0
            if not (0.6 <= w / w0 <= 1.7 and 0.6 <= h / h0 <= 1.7) or blob.area / max(1, w * h) < 0.45:
                continue  # not the object's size and shape: a piece of an arm of the same colour
            # resting on the table, nothing is right above it; in a hand, the gripper is
            above = scene.hsv[max(0, blob.y0 - max(2, h // 2)):blob.y0, blob.x0:blob.x1]
            if above.size:
                attached = mask[max(0, blob.y0 - max(2, h // 2)):blob.y0, blob.x0:blob.x1] | (above[..., 2] < 70)
                if attached.mean() > 0.25:
                    continue
            return blob
        return None


Rule = Union[InsideRule, PastLineRule, RaisedRule]


@attrs.frozen
class Task:
    id: str
    goal: str
    rule: Rule
    aliases: tuple[str, ...] = ()
    roi: tuple[float, float, float, float] | None = None
    hold_frames: int = 1  # score = median over the last N frames' scores (success must hold)


@attrs.frozen
class RuleSet:
    colours: dict[str, tuple[HSVRange, ...]]
    tasks: dict[str, Task]
    min_area: float = 0.0003  # smallest blob, as a fraction of the image area
    source: str = "?"

    def find(self, goal: str) -> Task:
        """The task whose id, goal or alias matches ``goal`` (case and punctuation ignored)."""
        key = normalise_goal(goal)
        for task in self.tasks.values():
            if key in {normalise_goal(task.id), normalise_goal(task.goal), *map(normalise_goal, task.aliases)}:
                return task
        known = "; ".join(f"{t.id}: {t.goal!r}" for t in self.tasks.values())
        raise LookupError(f"no heuristic rule for goal {goal!r} in {self.source} (known: {known})")


# ---------------------------------------------------------------------------- loading
# A rules file is read by vla's one converter (vla.config.structure): unknown keys, wrong types
# and values a class refuses are errors naming the file and the key. What only the whole file
# can tell (a rule naming a colour the file does not define) is checked here after it.

RULE_CLASSES: dict[str, type] = {"inside": InsideRule, "past_line": PastLineRule, "raised": RaisedRule}


def _roi(_inst, attribute, value):
    if value is None:
        return
    x0, y0, x1, y1 = value
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"expected [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {list(value)}")


def _goal(_inst, attribute, value):
    if not value.strip():
        raise ValueError("expected the task's goal text")


def _at_least_one(_inst, attribute, value):
    if value < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")


@attrs.frozen
class TaskEntry:
    """A task in a rules file, without its rule's own settings (which sit beside these keys)."""

    goal: str = attrs.field(validator=_goal)
    rule: str = attrs.field(validator=_one_of(tuple(RULE_CLASSES)))
    aliases: tuple[str, ...] = ()
    roi: tuple[float, float, float, float] | None = attrs.field(default=None, validator=_roi)
    hold_frames: int = attrs.field(default=1, validator=_at_least_one)


@attrs.frozen
class RulesFile:
    """The top level of a rules file; each task is read with TaskEntry and its rule's class."""

    colours: dict[str, tuple[HSVRange, ...] | HSVRange]
    tasks: dict[str, dict]
    roi: tuple[float, float, float, float] | None = attrs.field(default=None, validator=_roi)
    min_area: float = 0.0003


TASK_KEYS = {f.name for f in attrs.fields(TaskEntry)}


def parse_rules(data: Any, source: str) -> RuleSet:
    from vla.config import ConfigError, structure

    try:
        top = structure(RulesFile, data, source)
        colours = {name: ranges if isinstance(ranges, tuple) else (ranges,) for name, ranges in top.colours.items()}
        if not colours:
            raise ConfigError(source, "colours", "expected a mapping of colour name to HSV ranges")
        if not top.tasks:
            raise ConfigError(source, "tasks", "expected a mapping of task id to rule")
        tasks = {}
        for task_id, entry in top.tasks.items():
            key = f"tasks.{task_id}"
            entry = entry if isinstance(entry, dict) else {}
            task = structure(TaskEntry, {k: v for k, v in entry.items() if k in TASK_KEYS}, source, key)
            rule = structure(RULE_CLASSES[task.rule], {k: v for k, v in entry.items() if k not in TASK_KEYS},
                             source, key)
            for name in ("object", "container"):
                value = getattr(rule, name, None)
                if value is not None and value not in colours:
                    raise ConfigError(source, f"{key}.{name}", f"expected a colour from 'colours' ({', '.join(colours)}), got {value!r}")
            line = getattr(rule, "line", None)
            if line is not None and line.colour is not None and line.colour not in colours:
                raise ConfigError(source, f"{key}.line.colour", f"expected a colour from 'colours' ({', '.join(colours)}), got {line.colour!r}")
            tasks[str(task_id)] = Task(id=str(task_id), goal=task.goal, rule=rule, aliases=task.aliases,
                                       roi=task.roi if "roi" in entry else top.roi, hold_frames=task.hold_frames)
    except ConfigError as exc:
        raise RulesError(exc.source, exc.key, exc.problem) from None
    return RuleSet(colours=colours, tasks=tasks, min_area=top.min_area, source=source)


def load_rules(path: str | Path | None = None) -> RuleSet:
    from vla.config import ConfigError, read_yaml

    path = Path(path) if path else DEFAULT_RULES
    if not path.is_file():
        raise RulesError(str(path), "(file)", "no such rules file")
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise RulesError(exc.source, exc.key, exc.problem) from None
    return parse_rules(data, str(path))
