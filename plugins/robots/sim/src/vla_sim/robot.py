"""The simulated SO-101 on a table: a `vla.robot.EpisodicRobot` backed by MuJoCo.

``act(q)`` sets the six position servos' targets (radians) and advances the physics by one
control period; cameras are rendered only when ``observe()`` is called, so a policy that asks
for an observation every few ticks pays for rendering only then. Rendering is headless through
EGL (``MUJOCO_GL=egl``, which importing ``vla_sim`` chooses on Linux unless already set).
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs
import numpy as np

from vla.robot import ENV_STATE_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY
from vla_sim.config import SimConfig
from vla_so101_description.description import SO101
from vla_sim.scene import CUBE_HALF, DISTRACTOR, FREE_BODIES, TABLE_TOP
from vla_sim.tasks import (
    ENV_STATE_BODIES,
    Task,
    WorldState,
    check_success,
    resolve_task,
    sample_distractor,
    sample_layout,
    sample_lighting,
)

# A pose above the table with the gripper tilted down, clear of every object's start position.
HOME_Q = np.array(SO101.home)
NOISE_STREAM = 0xDA27  # the action noise's random stream, apart from the layouts' and the lights'
SETTLE_S = 0.15  # physics run after placing objects, so they rest before the episode starts



class SimRobot:
    """The simulated SO-101 tabletop. Build with ``SimRobot(SimConfig(...))``."""

    description = SO101
    joint_names = SO101.joint_names
    robot_type = "so101_sim"  # recorded in datasets, beside LeRobot's "so101_follower"

    def __init__(self, config: SimConfig | None = None):
        self.config = config or SimConfig()
        resolve_task(self.config.task)  # fail early on a wrong task name
        self.control_hz = float(self.config.control_hz)
        self.cameras = {c: (self.config.image_height, self.config.image_width, 3) for c in self.config.cameras}
        self._model = None
        self._data = None
        self._renderer = None
        self._task: Task = resolve_task(self.config.task)
        self._seed: int | None = self.config.seed
        self._episode_started = False
        self.lighting_factor = 1.0  # this episode's light scale (SimConfig.lighting)
        self._noise = np.zeros(len(self.joint_names) - 1)  # SimConfig.action_noise on the arm joints
        self._noise_rng = np.random.default_rng()

    # ------------------------------------------------------------------ lifecycle

    @property
    def model(self):
        if self._model is None:
            self._build()
        return self._model

    @property
    def data(self):
        if self._data is None:
            self._build()
        return self._data

    def _build(self) -> None:
        import mujoco  # vla_sim/__init__ has chosen EGL on Linux before this import

        from vla_sim.scene import PADS, build_scene_xml

        timestep = 1.0 / (self.control_hz * self.config.substeps)
        xml = build_scene_xml(
            SO101.model_path("mjcf"), timestep, marker=self.config.marker, distractor=self.config.distractor
        )
        model = mujoco.MjModel.from_xml_string(xml)
        self._mj = mujoco
        self._model, self._data = model, mujoco.MjData(model)
        self._qadr = np.array([model.joint(n).qposadr[0] for n in self.joint_names])
        self._act_ids = np.array([model.actuator(n).id for n in self.joint_names])
        self._ctrl_lo = model.actuator_ctrlrange[self._act_ids, 0].copy()
        self._ctrl_hi = model.actuator_ctrlrange[self._act_ids, 1].copy()
        self._free_adr = {n: model.joint(n).qposadr[0] for n in ENV_STATE_BODIES if n in FREE_BODIES}
        self._free_vadr = {n: model.joint(n).dofadr[0] for n in self._free_adr}
        self._body_ids = {n: model.body(n).id for n in ENV_STATE_BODIES}
        self._geom_names = {model.geom(n).id: n for n in list(self._free_adr) + list(PADS)}
        self.tool_site = model.site("tool").id
        if self.config.distractor:
            self._distractor_adr = model.joint(DISTRACTOR).qposadr[0]
        # the lights as built, which SimConfig.lighting scales per episode
        self._light_diffuse = model.light_diffuse.copy()
        self._light_ambient = model.light_ambient.copy()
        self._head_diffuse = model.vis.headlight.diffuse.copy()
        self._head_ambient = model.vis.headlight.ambient.copy()

    def connect(self) -> None:
        if not self._episode_started:
            self.reset(self._task.id, self._seed)

    def disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def close(self) -> None:
        self.disconnect()

    # ------------------------------------------------------------------ episodes

    @property
    def task(self) -> Task:
        return self._task

    @property
    def max_episode_s(self) -> float:
        return self._task.max_episode_s

    @property
    def elapsed_s(self) -> float:
        """Simulated time since the episode started."""
        return float(self.data.time)

    def timed_out(self) -> bool:
        return self.elapsed_s >= self.max_episode_s - 1e-9

    def reset(self, task: str, seed: int | None = None) -> None:
        """Start an episode of ``task`` (id or goal text) with objects placed from ``seed``."""
        self._task = resolve_task(task)
        self._seed = seed
        layout = sample_layout(self._task.id, seed)
        m, d, mj = self.model, self.data, self._mj
        mj.mj_resetData(m, d)
        d.qpos[self._qadr] = HOME_Q
        d.ctrl[self._act_ids] = HOME_Q
        for name, (x, y, yaw) in layout.cubes.items():
            a = self._free_adr[name]
            d.qpos[a : a + 3] = (x, y, CUBE_HALF)
            d.qpos[a + 3 : a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        m.body_pos[self._body_ids["blue_bowl"]] = (*layout.bowl, 0.0)
        m.body_pos[self._body_ids["line"]] = (*layout.line, 0.0)
        if self.config.distractor:
            x, y, yaw = sample_distractor(self._task.id, seed, layout)
            a = self._distractor_adr
            d.qpos[a : a + 3] = (x, y, CUBE_HALF)
            d.qpos[a + 3 : a + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        self._set_lighting(1.0 if self.config.lighting is None else sample_lighting(seed, *self.config.lighting))
        self._noise_rng = np.random.default_rng([NOISE_STREAM, 0 if seed is None else seed])
        self._noise[:] = self._noise_rng.normal(0.0, self.config.action_noise, self._noise.shape)
        mj.mj_forward(m, d)
        for _ in range(int(round(SETTLE_S * self.control_hz * self.config.substeps))):
            mj.mj_step(m, d)
        d.time = 0.0
        self._episode_started = True

    def _set_lighting(self, factor: float) -> None:
        m = self.model
        self.lighting_factor = factor
        m.light_diffuse[:] = np.clip(self._light_diffuse * factor, 0.0, 1.0)
        m.light_ambient[:] = np.clip(self._light_ambient * factor, 0.0, 1.0)
        m.vis.headlight.diffuse[:] = np.clip(self._head_diffuse * factor, 0.0, 1.0)
        m.vis.headlight.ambient[:] = np.clip(self._head_ambient * factor, 0.0, 1.0)

    # ------------------------------------------------------------------ runtime

    def act(self, q) -> None:
        """Set the servo targets (six joint positions, radians) and advance one control period."""
        q = np.asarray(q, dtype=float)
        if q.shape != (len(self.joint_names),):
            raise ValueError(f"sim act: expected {len(self.joint_names)} joint positions (radians), got shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"sim act: joint positions must be finite, got {q}")
        d = self.data
        if self.config.action_noise > 0:
            q = q.copy()
            q[:-1] += self._drift()
        d.ctrl[self._act_ids] = np.clip(q, self._ctrl_lo, self._ctrl_hi)
        for _ in range(self.config.substeps):
            self._mj.mj_step(self._model, d)

    def _drift(self) -> np.ndarray:
        """This tick's offset of the arm joints: an Ornstein-Uhlenbeck step, stationary at action_noise."""
        keep = math.exp(-1.0 / (self.control_hz * self.config.action_noise_s))
        fresh = self._noise_rng.normal(0.0, self.config.action_noise * math.sqrt(1.0 - keep * keep), self._noise.shape)
        self._noise = keep * self._noise + fresh
        return self._noise

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].astype(np.float32)

    def environment_state(self) -> np.ndarray:
        d, m = self.data, self.model
        out = []
        for name in ENV_STATE_BODIES:
            if name in self._free_adr:
                a = self._free_adr[name]
                out.append(d.qpos[a : a + 7])
            else:
                b = self._body_ids[name]
                out.append(np.concatenate([d.xpos[b], d.xquat[b]]))
        return np.concatenate(out).astype(np.float32)

    def render(self, camera: str) -> np.ndarray:
        """One camera's current view, HxWx3 uint8 RGB."""
        if self._renderer is None:
            try:
                self._renderer = self._mj.Renderer(self.model, self.config.image_height, self.config.image_width)
            except Exception as exc:
                raise RuntimeError(
                    f"the sim cannot render ({exc}). Headless Linux needs EGL: apt-get install libegl1 libgl1 "
                    f"libgl1-mesa-dri, and MUJOCO_GL=egl set before anything imports mujoco "
                    f"(now MUJOCO_GL={os.environ.get('MUJOCO_GL')!r})"
                ) from exc
        self._renderer.update_scene(self.data, camera=camera)
        return self._renderer.render().copy()

    def observe(self, images: bool = True) -> dict[str, Any]:
        """State, object poses, the goal and (unless ``images=False``) one frame per camera."""
        obs: dict[str, Any] = {
            STATE_KEY: self.joint_positions(),
            ENV_STATE_KEY: self.environment_state(),
            TASK_KEY: self._task.goal,
        }
        if images:
            for cam in self.cameras:
                obs[IMAGE_PREFIX + cam] = self.render(cam)
        return obs

    def calibration_status(self):
        from vla.robot import CalibrationStatus

        return CalibrationStatus(True, "simulated arm: joint readings are exact, nothing to calibrate")

    def forward_kinematics(self, q) -> np.ndarray:
        return SO101.kinematics.forward_kinematics(q)

    # ------------------------------------------------------------------ calibration

    def show_calibration_marker(self, visible: bool = True) -> None:
        """Put the magenta marker on the tool point (what `vla calibrate camera` asks for first).
        The marker is visual only; turning it on rebuilds the scene if it was built without it."""
        if bool(visible) == self.config.marker:
            return
        self.config = attrs.evolve(self.config, marker=bool(visible))
        if self._model is not None:
            task, seed, started = self._task.id, self._seed, self._episode_started
            self.disconnect()
            self._model = self._data = None
            if started:
                self.reset(task, seed)

    def camera_intrinsics(self, camera: str) -> np.ndarray:
        """The 3x3 intrinsics of one camera at the configured image size, from its MJCF ``fovy``."""
        from vla.calibration.camera import intrinsics_from_fovy

        if camera not in self.cameras:
            raise ValueError(f"the sim has no camera {camera!r} here (cameras: {', '.join(self.cameras)})")
        fovy = float(self.model.cam_fovy[self.model.camera(camera).id])
        return intrinsics_from_fovy(fovy, self.config.image_width, self.config.image_height)

    def tool_point(self) -> np.ndarray:
        """The tool site's position as MuJoCo computes it (metres, base frame)."""
        return self.data.site_xpos[self.tool_site].copy()

    def world_state(self) -> WorldState:
        d = self.data
        poses = dict(zip(ENV_STATE_BODIES, self.environment_state().astype(float).reshape(-1, 7)))
        speeds = {n: float(np.linalg.norm(d.qvel[v : v + 3])) for n, v in self._free_vadr.items()}
        touching = set()
        for i in range(d.ncon):
            c = d.contact[i]
            a, b = self._geom_names.get(c.geom1), self._geom_names.get(c.geom2)
            if a and b:
                cube, pad = (a, b) if a in self._free_adr else (b, a)
                if cube in self._free_adr and pad not in self._free_adr:
                    touching.add((cube, pad))
        return WorldState(poses=poses, speeds=speeds, touching=frozenset(touching))

    def success(self) -> bool:
        return check_success(self._task.id, self.world_state())

    def incidents(self) -> list[str]:
        """Gentle failures now visible in the scene: objects that have fallen off the table."""
        d = self.data
        return [f"{name} knocked off the table" for name, a in self._free_adr.items()
                if d.qpos[a + 2] < TABLE_TOP - 0.01]

