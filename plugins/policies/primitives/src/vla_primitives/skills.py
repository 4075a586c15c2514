"""The skills (reach, grasp, lift, place, push) and how each goal composes them into one plan.

A plan is made once per episode from what the front camera saw at its start and the episode's
parameters (see params.py); it is a joint trajectory for the whole episode, open loop.
Geometry is in the robot's base frame; the tool frame follows the convention every robot
description keeps (x out of the jaws, z from the fixed jaw toward the moving one), so a
top-down grasp with the jaws across an object is ``top_down(yaw)`` on any arm.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from vla.description.rotations import top_down
from vla_primitives.config import PrimitivesConfig
from vla_primitives.motion import Trajectory
from vla_primitives.perception import Found, Line
from vla_primitives.params import Goal


@attrs.frozen
class Scene:
    """What the plan is made from: the objects the goal names, as the camera found them."""

    target: Found  # the object to move
    container: Found | None = None  # pick_place
    line: Line | None = None  # push
    left: tuple[float, float] = (0.0, -1.0)  # the front camera's "left" on the table (unit, base frame)


def _wrap_quarter(a: float) -> float:
    return (a + math.pi / 4) % (math.pi / 2) - math.pi / 4


class Skills:
    def __init__(self, traj: Trajectory, config: PrimitivesConfig):
        self.t = traj
        self.c = config
        g = traj.desc.gripper
        self.open = g.closed + config.open_fraction * (g.open - g.closed) if g else 0.0
        self.closed = g.closed if g else 0.0

    # ------------------------------------------------------------------ skills

    def reach(self, p, rot=None, speed=None, grip=None):
        """Move the tool to ``p`` by way of the travel height when it is far away."""
        c, t = self.c, self.t
        p = np.asarray(p, dtype=float)
        far = np.linalg.norm(t.p[:2] - p[:2]) > 0.02
        if far:
            if t.p[2] < c.travel_z - 0.01:
                t.move([t.p[0], t.p[1], c.travel_z], speed=c.approach_speed, grip=grip)
            t.move([p[0], p[1], max(c.travel_z, p[2])], rot, speed=speed or c.speed, grip=grip, min_ticks=6)
        t.move(p, rot, speed=c.approach_speed, grip=grip)

    def grasp(self, centre, yaw: float, jaw: float, z: float):
        """Open, come down with the jaws across the object, close on it."""
        rot = top_down(yaw)
        axis = rot[:, 2]
        tool = np.array([centre[0], centre[1], z]) - jaw * axis
        self.reach(tool + [0, 0, max(self.c.travel_z - z, 0.02)], rot, grip=self.open)
        self.t.move(tool, rot, speed=self.c.approach_speed, grip=self.open)
        self.t.grip(self.closed, max(1, round(self.c.close_s * self.t.hz)))
        return rot

    def lift(self, z: float):
        t = self.t
        t.move([t.p[0], t.p[1], z], speed=self.c.approach_speed, grip=self.closed)

    def place(self, container_xy, release_z: float, rot):
        """Carry what the jaws hold over the container, lower it to ``release_z``, let go, back off."""
        c, t = self.c, self.t
        held = c.held_offset * rot[:, 2]  # the object's centre from the tool point while held
        over = np.array([container_xy[0], container_xy[1], release_z]) - [held[0], held[1], 0.0]
        carry = max(release_z + 0.03, t.p[2])
        t.move([t.p[0], t.p[1], carry], speed=c.approach_speed, grip=self.closed)
        t.move([over[0], over[1], carry], speed=c.speed, grip=self.closed)
        t.move(over, speed=c.approach_speed, grip=self.closed)
        t.grip(self.open, max(1, round(0.3 * t.hz)))
        t.move(over + [0, 0, 0.05], speed=c.approach_speed)

    def push(self, start, end, z: float, yaw: float):
        """Closed jaws down at ``start``, along the table to ``end``, then up."""
        c, t = self.c, self.t
        rot = top_down(yaw)
        start = np.array([start[0], start[1], z])
        end = np.array([end[0], end[1], z])
        self.reach(start, rot, grip=self.closed)
        t.move(end, rot, speed=c.push_speed, grip=self.closed)
        t.move(end + [0, 0, max(c.travel_z - z, 0.03)], rot, speed=c.approach_speed)

    # ------------------------------------------------------------------ goals

    def grasp_yaw(self, found: Found, offset: float) -> float:
        """Jaw yaw across two faces of the object (as seen), the one nearest pointing away from the base."""
        radial = math.atan2(found.xyz[1], found.xyz[0])
        face = found.yaw if found.yaw is not None else radial
        return radial + _wrap_quarter(face - radial) + offset

    def compose(self, goal: Goal, scene: Scene, p: dict[str, float]) -> None:
        c = self.c
        self.t.hold(round(c.start_hold_s * self.t.hz))
        if goal.skill in ("lift", "pick_place"):
            obj = scene.target
            centre = (obj.xyz[0] + p["grasp_dx"], obj.xyz[1] + p["grasp_dy"])
            rot = self.grasp(centre, self.grasp_yaw(obj, p["grasp_yaw"]), p["grasp_jaw"], p["grasp_z"])
            if goal.skill == "lift":
                self.lift(p["lift_z"])
                self.t.hold(round(1.0 * self.t.hz))
                return
            box = scene.container
            self.lift(max(p["release_z"] + 0.03, p["grasp_z"] + 0.04))
            self.place((box.xyz[0] + p["place_dx"], box.xyz[1] + p["place_dy"]), p["release_z"], rot)
            self.t.hold(round(1.0 * self.t.hz))
            return
        # push: perpendicular to the line, toward the side the goal names
        obj, line = scene.target, scene.line
        u = np.array([1.0, line.slope]) / math.hypot(1.0, line.slope)  # along the line
        n = np.array([-u[1], u[0]])
        side = np.asarray(scene.left) * (1.0 if goal.side == "left" else -1.0)
        if n @ side < 0:
            n = -n
        cube = np.array(obj.xyz[:2])
        along = cube @ u
        reach_out = c.object_size / math.sqrt(2) + c.pusher_half  # clears a cube at any yaw
        start = cube + u * p["push_dx"] - n * (reach_out + p["push_start"])
        # the line's point nearest the cube, then past it by push_past (the pusher's front)
        on_line = np.array([along * u[0], line.y_at(along * u[0])])
        on_line = on_line + u * ((cube - on_line) @ u)
        end = on_line + u * p["push_dx"] + n * (p["push_past"] - c.pusher_half)
        if (end - start) @ n < 0.01:  # already past: a short nudge, not a push backwards
            end = start + n * 0.01
        yaw = math.atan2(u[1], u[0]) + p["push_yaw"]
        self.push(start, end, p["push_z"], yaw)
        self.t.hold(round(1.0 * self.t.hz))
