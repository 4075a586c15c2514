"""What a goal asks for, and the parameters of the primitives that do it (the learner's search space).

The goal text is parsed into a ``Goal``: which skill (lift, pick_place, push), the object's colour
and the target's (a container's colour, or a line and a side). Each skill has a fixed list of
``Param`` (name, range, initial value). The initial value of every parameter is the middle of its
range: a neutral start that the learner moves, not an answer tuned by hand.

Units: metres and radians. Offsets are in the robot's base frame (x forward, y left, z up) and
correct what the camera got wrong about where an object is.

This module imports attrs only: ``vla_primitives.parameter_space`` is cheap to call.
"""

from __future__ import annotations

import re

import attrs


class GoalError(ValueError):
    """A goal the primitives cannot do: an unknown task form, or a colour they cannot see."""


class ParamsError(ValueError):
    """Parameters that do not fit a task's parameter space."""


@attrs.frozen
class Param:
    name: str
    low: float
    high: float
    init: float

    def __attrs_post_init__(self):
        if not self.low < self.high or not self.low <= self.init <= self.high:
            raise ValueError(f"param {self.name}: need low < high and init within, got {self.low}, {self.high}, {self.init}")


def _mid(name: str, low: float, high: float) -> Param:
    return Param(name, low, high, round((low + high) / 2.0, 6))


# Colours the object finder knows (the HSV ranges are in perception.py's colour table).
KNOWN_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "magenta", "black")
OBJECT_WORDS = ("cube", "block", "box")
CONTAINER_WORDS = ("bowl", "plate", "tray", "box", "basket")

_GRASP = [
    # object position correction, base frame: what the camera calibration gets wrong (the sim's
    # true one: about 1 mm). Wider, it trades off against grasp_jaw along the jaw axis and a
    # noisy search drifts along that ridge to where lateral objects are missed.
    _mid("grasp_dx", -0.01, 0.01),
    _mid("grasp_dy", -0.01, 0.01),
    _mid("grasp_jaw", -0.02, 0.10),  # object centre from the tool point along the jaw axis (open jaws)
    _mid("grasp_z", 0.0, 0.08),  # tool point height at the grasp
    _mid("grasp_yaw", -0.6, 0.6),  # jaw yaw relative to the object's faces
]

# Ranges are what any small arm's gripper and a tabletop allow, not the simulator's answer: the
# middle of a range (the initial value) is a start the learner has to move away from.
SPACES: dict[str, tuple[Param, ...]] = {
    "lift": tuple(_GRASP + [_mid("lift_z", 0.02, 0.20)]),  # tool height the object is lifted to
    "pick_place": tuple(
        _GRASP
        + [
            # container position correction, base frame: the camera finds a bowl within a few mm,
            # and a wider range only lets a learner paid for short paths drift toward the rim
            _mid("place_dx", -0.02, 0.02),
            _mid("place_dy", -0.02, 0.02),
            _mid("release_z", 0.02, 0.20),  # tool height where the jaws open over the container
        ]
    ),
    "push": (
        _mid("push_dx", -0.03, 0.03),  # pusher position along the line, from the object's centre
        _mid("push_start", 0.0, 0.06),  # gap between the pusher and the object's near side at the start
        _mid("push_z", 0.0, 0.06),  # tool point height while pushing
        _mid("push_past", -0.05, 0.10),  # how far beyond the line the pusher's front ends
        _mid("push_yaw", -0.5, 0.5),  # jaw yaw while pushing
    ),
}


@attrs.frozen
class Goal:
    skill: str  # lift | pick_place | push
    text: str
    object_colour: str
    target_colour: str | None = None  # pick_place: the container's colour; push: the line's
    side: str | None = None  # push: "left" or "right" of the line, as the front camera sees it


def _colour(word: str, text: str) -> str:
    word = word.lower()
    if word not in KNOWN_COLOURS:
        raise GoalError(f"goal {text!r}: the primitives cannot see the colour {word!r} (known: {', '.join(KNOWN_COLOURS)})")
    return word


_OBJ = "(?:cube|block|box)"
_PATTERNS = (
    ("pick_place", re.compile(rf"^(?:put|place|drop|move) the (\w+) {_OBJ} (?:in|into|inside|on|onto) the (\w+) (?:bowl|plate|tray|box|basket)$")),
    ("push", re.compile(rf"^push the (\w+) {_OBJ} to the (left|right) of the (?:(\w+) )?line$")),
    ("lift", re.compile(rf"^(?:lift|pick up|raise) the (\w+) {_OBJ}$")),
)


def parse_goal(text: str) -> Goal:
    """The skill and colours a goal names, or ``GoalError`` saying what the primitives can do."""
    if not isinstance(text, str) or not text.strip():
        raise GoalError("the goal text is empty")
    norm = " ".join(text.strip().lower().rstrip(".!").split())
    for skill, pattern in _PATTERNS:
        m = pattern.match(norm)
        if not m:
            continue
        if skill == "pick_place":
            return Goal(skill, text, _colour(m.group(1), text), _colour(m.group(2), text))
        if skill == "push":
            return Goal(skill, text, _colour(m.group(1), text), _colour(m.group(3) or "black", text), m.group(2))
        return Goal(skill, text, _colour(m.group(1), text))
    raise GoalError(
        f"the primitives do not know the goal {text!r}; they do: 'lift the <colour> cube', "
        "'put the <colour> cube in the <colour> bowl', 'push the <colour> cube to the left|right of the line'"
    )


def parameter_space(task_text: str) -> list[Param]:
    """The parameters the learner tunes for this goal (5-9 of them), in a fixed order."""
    return list(SPACES[parse_goal(task_text).skill])


def resolve_params(task_text: str, given: dict | None) -> dict[str, float]:
    """Every parameter of the goal's space: ``given`` values (clipped into their range) over the
    initial ones. An unknown name or a value that is not a finite number is an error."""
    space = SPACES[parse_goal(task_text).skill]
    names = {p.name: p for p in space}
    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ParamsError(
            f"parameters {', '.join(unknown)} are not in the space of {task_text!r} (its parameters: {', '.join(names)})"
        )
    out = {}
    for p in space:
        value = given.get(p.name, p.init)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
            raise ParamsError(f"parameter {p.name}: expected a finite number, got {value!r}")
        out[p.name] = min(max(float(value), p.low), p.high)
    return out
