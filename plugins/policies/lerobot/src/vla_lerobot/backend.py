"""The `lerobot` policy backend: a LeRobot pretrained policy behind `vla serve`.

Loading uses LeRobot's own pieces: the policy class's ``from_pretrained`` and the pre/post-
processor pipelines saved beside the checkpoint (``make_pre_post_processors`` with the
checkpoint path), so normalisation, tokenisation and device placement are exactly what the
policy was trained with. Inference stacks the observations of every arm in a request batch
into one batch and calls ``predict_action_chunk`` once per batch.

What the server's metadata says (cameras and their shapes, state size, action size, chunk
horizon) comes from the policy's config; the camera rename map translates the lab's camera
names to the policy's, so clients keep their own names.

Real-time chunking: for pi0, pi0.5 and SmolVLA (the flow-matching policies whose lerobot
0.4.4 denoising loop applies RTC guidance) the client's ``inference_delay`` and
``prev_chunk`` are passed to ``predict_action_chunk`` as ``inference_delay`` and
``prev_chunk_left_over``, after normalising the chunk with the policy's own action
normaliser (the model guides in its normalised action space). ACT and Diffusion predict
without them; the client's own merge handles the overlap.

Units: radians in and out for policies trained on datasets vla recorded (see config.py).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from vla.policy import CameraContract, PolicyInfo
from vla_lerobot.config import RTC_POLICY_TYPES, LeRobotPolicyConfig
from vla_lerobot.observations import (
    ENV_STATE_KEY,
    IMAGE_PREFIX,
    STATE_KEY,
    Contract,
    ObservationError,
    rtc_inputs,
    stack_observations,
)

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """The configured path is not a LeRobot checkpoint; the message says what was looked for."""


def resolve_checkpoint(path: str) -> str:
    """A local ``pretrained_model`` folder for ``path``, or ``path`` itself when it is a hub id.

    Accepts the folder itself, a `vla train` output (``OUT/pretrained_model``) and a LeRobot
    training output (``OUT/checkpoints/last/pretrained_model``).
    """
    if not path:
        raise CheckpointError(
            "no checkpoint configured: set plugins.lerobot.path in vla.yaml (or $VLA_LEROBOT_PATH) "
            "to a pretrained_model folder or a hub id"
        )
    local = Path(path).expanduser()
    candidates = [local, local / "pretrained_model", local / "checkpoints" / "last" / "pretrained_model"]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate)
    looks_local = local.is_absolute() or path.startswith((".", "~")) or local.exists() or path.count("/") != 1
    if looks_local:
        raise CheckpointError(
            f"{path}: no LeRobot checkpoint here (looked for config.json in {', '.join(str(c) for c in candidates)})"
        )
    return path  # a hub id such as "lerobot/smolvla_base"


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    return name


def chunk_horizon(policy_config) -> int:
    """How many actions ``predict_action_chunk`` answers for this config.

    Diffusion answers ``n_action_steps`` actions (it slices its horizon at the current step);
    ACT, SmolVLA and pi0/pi0.5 answer their whole ``chunk_size``.
    """
    if policy_config.type == "diffusion":
        return int(policy_config.n_action_steps)
    size = getattr(policy_config, "chunk_size", None)
    return int(size if size is not None else policy_config.n_action_steps)


class LeRobotBackend:
    """A `PolicyBackend` serving one LeRobot policy. Thread-safe: one model call at a time."""

    def __init__(self, config: LeRobotPolicyConfig):
        self.config = config
        self.checkpoint = resolve_checkpoint(config.path)
        self._lock = threading.Lock()
        self._policy_config = None
        self._policy = None
        self._preprocessor = None
        self._postprocessor = None
        self._action_normalizer = None
        self._horizon: int | None = None
        # Per-session observation history for policies that read several past frames
        # (Diffusion's n_obs_steps); policies with one frame keep none.
        self._history: dict[str, deque] = {}
        self._check_camera_map()

    # ----------------------------------------------------------------- loading

    def _check_camera_map(self) -> None:
        targets = list(self.config.camera_map.values())
        if len(set(targets)) != len(targets):
            raise ValueError(f"plugins.lerobot.camera_map: two lab cameras map to the same policy camera: {self.config.camera_map}")

    def _load_config(self):
        if self._policy_config is not None:
            return self._policy_config
        import lerobot.policies.factory  # noqa: F401  (registers every policy config type)
        from lerobot.configs.policies import PreTrainedConfig

        cfg = PreTrainedConfig.from_pretrained(self.checkpoint, revision=self.config.revision)
        cfg.device = _resolve_device(self.config.device)
        # The checkpoint holds every weight; building the model must not fetch ImageNet
        # backbone weights over the network (torchvision would, for ACT and Diffusion).
        if getattr(cfg, "pretrained_backbone_weights", None) is not None:
            cfg.pretrained_backbone_weights = None
        if cfg.type in RTC_POLICY_TYPES and self.config.rtc:
            from lerobot.policies.rtc.configuration_rtc import RTCConfig

            cfg.rtc_config = RTCConfig(
                enabled=True,
                execution_horizon=self.config.rtc_execution_horizon,
                max_guidance_weight=self.config.rtc_max_guidance_weight,
            )
        policy_cameras = {key[len(IMAGE_PREFIX):] for key in cfg.image_features}
        unknown = sorted(set(self.config.camera_map.values()) - policy_cameras)
        if unknown:
            raise ValueError(
                f"plugins.lerobot.camera_map names cameras the policy does not have: {unknown} "
                f"(the policy's cameras: {sorted(policy_cameras)})"
            )
        self._policy_config = cfg
        return cfg

    def _load(self) -> None:
        if self._policy is not None:
            return
        cfg = self._load_config()
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.processor import NormalizerProcessorStep

        policy = get_policy_class(cfg.type).from_pretrained(self.checkpoint, config=cfg, revision=self.config.revision)
        policy.eval()
        rename = {IMAGE_PREFIX + lab: IMAGE_PREFIX + theirs for lab, theirs in self.config.camera_map.items()}
        pre, post = make_pre_post_processors(
            cfg,
            pretrained_path=self.checkpoint,
            preprocessor_overrides={
                "device_processor": {"device": cfg.device},
                "rename_observations_processor": {"rename_map": rename},
            },
        )
        self._action_normalizer = next((s for s in pre.steps if isinstance(s, NormalizerProcessorStep)), None)
        self._policy, self._preprocessor, self._postprocessor = policy, pre, post
        log.info("loaded %s policy from %s on %s", cfg.type, self.checkpoint, cfg.device)

    # -------------------------------------------------------------- the contract

    def _lab_camera(self, policy_camera: str) -> str:
        for lab, theirs in self.config.camera_map.items():
            if theirs == policy_camera:
                return lab
        return policy_camera

    def contract(self) -> Contract:
        cfg = self._load_config()
        cameras = {}
        for key, feature in cfg.image_features.items():
            c, h, w = (int(v) for v in feature.shape)
            cameras[self._lab_camera(key[len(IMAGE_PREFIX):])] = (h, w, c)
        state = cfg.robot_state_feature
        env = cfg.env_state_feature
        return Contract(
            cameras=cameras,
            state_dim=int(state.shape[0]) if state is not None else None,
            env_state_dim=int(env.shape[0]) if env is not None else None,
            action_dim=int(cfg.action_feature.shape[0]),
        )

    @property
    def supports_rtc(self) -> bool:
        return self._load_config().type in RTC_POLICY_TYPES and self.config.rtc

    def info(self) -> PolicyInfo:
        cfg = self._load_config()
        contract = self.contract()
        extra: dict[str, Any] = {
            "policy_type": cfg.type,
            "checkpoint": self.checkpoint,
            "units": "radians",
            "n_obs_steps": int(getattr(cfg, "n_obs_steps", 1)),
        }
        if contract.env_state_dim is not None:
            extra["environment_state_dim"] = contract.env_state_dim
        if self.config.camera_map:
            extra["camera_map"] = dict(self.config.camera_map)
        return PolicyInfo(
            name=f"lerobot/{cfg.type}",
            cameras=tuple(CameraContract(name, shape) for name, shape in contract.cameras.items()),
            state_dim=contract.state_dim or 0,
            action_dim=contract.action_dim,
            horizon=self._horizon if self._horizon is not None else chunk_horizon(cfg),
            supports_rtc=self.supports_rtc,
            max_batch=self.config.max_batch,
            extra=extra,
        )

    # ------------------------------------------------------------------- serving

    def warmup(self) -> None:
        self._load()
        contract = self.contract()
        dummy: dict[str, Any] = {"task": "", "session": "__warmup__"}
        if contract.state_dim is not None:
            dummy[STATE_KEY] = np.zeros(contract.state_dim, np.float32)
        if contract.env_state_dim is not None:
            dummy[ENV_STATE_KEY] = np.zeros(contract.env_state_dim, np.float32)
        for name, shape in contract.cameras.items():
            dummy[IMAGE_PREFIX + name] = np.full(shape, 128, np.uint8)
        chunk = self.infer([dummy])[0]
        self._horizon = int(chunk.shape[0])  # what the model really answers, whatever the config says
        self._history.pop("__warmup__", None)
        self._policy.reset()

    def reset(self) -> None:
        with self._lock:
            self._history.clear()
            if self._policy is not None:
                self._policy.reset()

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        self._load()
        contract = self.contract()
        stacked = stack_observations(batch, contract, resize=self.config.resize_images)
        sessions = [self._session(obs, i) for i, obs in enumerate(batch)]
        groups = self._rtc_groups(batch, contract.action_dim)
        out: list[np.ndarray | None] = [None] * len(batch)
        with self._lock:
            for b, obs in enumerate(batch):
                if obs.get("reset"):
                    self._history.pop(sessions[b], None)
            for indices, rtc in groups:
                chunks = self._predict(stacked, indices, [sessions[i] for i in indices], rtc)
                for i, chunk in zip(indices, chunks):
                    out[i] = chunk
        return out  # type: ignore[return-value]

    @staticmethod
    def _session(obs: dict[str, Any], index: int) -> str:
        session = obs.get("session")
        # Without a session id, an arm is known only by its place in the batch.
        return str(session) if session else f"slot{index}"

    def _rtc_groups(self, batch, action_dim):
        """Split the batch so each model call shares one RTC setting (lerobot takes one delay per call)."""
        if not self.supports_rtc:
            return [(list(range(len(batch))), None)]
        groups: dict[tuple, list[int]] = {}
        inputs = {}
        for i, obs in enumerate(batch):
            rtc = rtc_inputs(obs, action_dim, i)
            inputs[i] = rtc
            key = (rtc[0], rtc[1].shape[0]) if rtc is not None else None
            groups.setdefault(key, []).append(i)
        return [(idx, None if key is None else [inputs[i] for i in idx]) for key, idx in groups.items()]

    def _predict(self, stacked, indices, sessions, rtc) -> list[np.ndarray]:
        import torch

        cfg = self._policy_config
        raw: dict[str, Any] = {}
        if stacked.state is not None:
            raw[STATE_KEY] = torch.from_numpy(stacked.state[indices])
        if stacked.env_state is not None:
            raw[ENV_STATE_KEY] = torch.from_numpy(stacked.env_state[indices])
        for name, frames in stacked.images.items():
            # HWC uint8 -> CHW float in [0, 1], as LeRobot datasets hand images to policies
            raw[IMAGE_PREFIX + name] = torch.from_numpy(frames[indices]).permute(0, 3, 1, 2).float().div_(255.0)
        raw["task"] = [stacked.tasks[i] for i in indices]
        # RTC guidance differentiates through the denoiser (torch.enable_grad inside lerobot),
        # which inference mode forbids; no_grad allows it.
        with torch.no_grad() if rtc is not None else torch.inference_mode():
            processed = self._preprocessor(raw)
            if processed.get("action") is None:
                processed.pop("action", None)  # the pipeline adds an empty action slot at inference
            kwargs = self._rtc_kwargs(rtc, cfg.device) if rtc is not None else {}
            if int(getattr(cfg, "n_obs_steps", 1)) > 1:
                self._load_history(processed, sessions)
            actions = self._policy.predict_action_chunk(processed, **kwargs)
            actions = self._postprocessor(actions)
        actions = actions.detach().to("cpu", torch.float32).numpy()
        return [np.ascontiguousarray(a) for a in actions]

    def _rtc_kwargs(self, rtc, device) -> dict[str, Any]:
        import torch
        from lerobot.processor.converters import create_transition
        from lerobot.processor.core import TransitionKey

        delay = rtc[0][0]
        prev = torch.from_numpy(np.stack([chunk for _, chunk in rtc])).to(device)
        if self._action_normalizer is not None:
            prev = self._action_normalizer(create_transition(action=prev))[TransitionKey.ACTION]
        return {"inference_delay": delay, "prev_chunk_left_over": prev}

    def _load_history(self, processed: dict[str, Any], sessions: list[str]) -> None:
        """Give a multi-frame policy each arm's own last n frames.

        LeRobot's Diffusion keeps its frame history in ``policy._queues`` for one episode with
        a fixed batch; a server interleaves arms, so the history is kept per session here and
        loaded into those queues, batch-stacked, right before ``predict_action_chunk``.
        """
        import torch
        from lerobot.utils.constants import ACTION, OBS_IMAGES

        cfg = self._policy_config
        n = int(cfg.n_obs_steps)
        if cfg.image_features:
            processed[OBS_IMAGES] = torch.stack([processed[k] for k in cfg.image_features], dim=-4)
        keys = [k for k in self._policy._queues if k != ACTION and k in processed]
        for b, session in enumerate(sessions):
            history = self._history.setdefault(session, deque(maxlen=n))
            entry = {k: processed[k][b] for k in keys}
            if not history:
                history.extend([entry] * n)  # a new episode repeats its first frame, as LeRobot does
            else:
                history.append(entry)
        queues = {k: deque([torch.stack([self._history[s][t][k] for s in sessions]) for t in range(n)], maxlen=n) for k in keys}
        queues[ACTION] = deque(maxlen=int(getattr(cfg, "n_action_steps", 1)))
        self._policy._queues = queues


def make_backend(config: LeRobotPolicyConfig) -> LeRobotBackend:
    return LeRobotBackend(config)


__all__ = ["CheckpointError", "LeRobotBackend", "ObservationError", "chunk_horizon", "make_backend", "resolve_checkpoint"]
