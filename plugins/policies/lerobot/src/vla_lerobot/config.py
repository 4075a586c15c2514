"""Config classes for the `lerobot` policy backend and the LeRobot trainers.

Light to import (attrs only): `vla plugins list` and the conformance check build these
from their defaults without importing torch or lerobot.

Units: a LeRobot dataset recorded by vla stores what the robot reports, radians for every
joint (the gripper included), so a policy trained on vla datasets reads and writes radians
and no conversion is needed anywhere in this backend. A policy trained on datasets recorded
by LeRobot's own SO-101 driver (degrees, gripper 0-100) would need its own conversion; this
backend does not guess units.
"""

from __future__ import annotations

import os

import attrs

# Policies whose lerobot 0.4.4 implementation applies real-time chunking (RTC) guidance in
# their flow-matching denoising loop (`RTCProcessor.denoise_step`): the client's inference
# delay and the rest of the previous chunk reach the model. pi0_fast has an `rtc_config`
# field in 0.4.4 but never uses it while decoding, so it is not listed.
RTC_POLICY_TYPES = frozenset({"pi0", "pi05", "smolvla"})


def _env_path() -> str:
    # Containers point the backend at a checkpoint through the environment (compose sets it).
    return os.environ.get("VLA_LEROBOT_PATH", "")


@attrs.define
class LeRobotPolicyConfig:
    """`plugins.lerobot` in vla.yaml."""

    # A LeRobot `pretrained_model` folder (config.json, model.safetensors and the saved
    # pre/post-processor pipelines), a `vla train` output folder, or a hub id
    # ("lerobot/smolvla_base"). Default: $VLA_LEROBOT_PATH.
    path: str = attrs.field(factory=_env_path)
    revision: str | None = None  # hub revision, for hub ids only
    device: str = "auto"  # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", "mps"
    # The lab's camera name -> the camera name the policy was trained with, e.g.
    # {"front": "camera1", "wrist": "camera2"}. Clients keep using the lab's names.
    camera_map: dict[str, str] = attrs.field(factory=dict)
    # Resize frames that do not match the policy's camera shape (OpenCV, area filter)
    # instead of refusing them.
    resize_images: bool = False
    # Real-time chunking for the policies that support it (see RTC_POLICY_TYPES).
    rtc: bool = True
    rtc_execution_horizon: int = 10
    rtc_max_guidance_weight: float = 10.0
    max_batch: int = 8


@attrs.define
class LeRobotTrainerConfig:
    """`plugins.<act|diffusion|smolvla>` in vla.yaml: how `vla train` trains that policy type."""

    device: str = "auto"
    num_workers: int = 0  # DataLoader workers; 0 decodes frames in the training process
    # Feed `observation.environment_state` (the simulator's privileged object poses) to the
    # policy. Off by default: a real arm has no such observation.
    use_environment_state: bool = False
    # Overrides of the LeRobot policy config (e.g. {"chunk_size": 40, "dim_model": 256});
    # `vla train -o key=value` adds to these.
    policy: dict = attrs.field(factory=dict)
    # Initialise from a pretrained policy (folder or hub id) instead of from scratch,
    # e.g. "lerobot/smolvla_base".
    init_from: str | None = None
    video_backend: str | None = None  # None: lerobot's default ("torchcodec", else "pyav")
    # Keep decoded frames in memory (as uint8) when the whole dataset fits in this many GB:
    # decoding video is what a CPU spends most of a small policy's training step on, and a
    # dataset is read many times over (epochs). 0 turns the cache off.
    cache_frames_gb: float = 2.0
    log_every: int = 10
    # Every this many steps also write OUTPUT/checkpoints/<step>/pretrained_model (and its
    # vla_train.json), so a long CPU run can be evaluated while it goes on. 0: the final one only.
    save_every: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    # ACT freezes its ResNet's batch norms, which suits ImageNet weights only. When the backbone
    # trains from scratch (pretrained_backbone_weights: null), train them (batch statistics) and
    # save them frozen, so the checkpoint is a plain LeRobot ACT. False: LeRobot's frozen norms.
    train_backbone_norm: bool = True
    # Train on camera frames resized to [height, width] (OpenCV area filter, as vla's client
    # resizes for a policy that asks for smaller frames), e.g. [64, 64]: a CPU trains on small
    # frames of a recording made at the rewarder's size. None: the dataset's size.
    image_size: list[int] | None = attrs.field(default=None)
    # The cameras the policy reads, e.g. [front]: a fixed camera that sees the whole table costs
    # half the backbone time of two. None: every camera of the dataset.
    cameras: list[str] | None = None

    @image_size.validator
    def _check_image_size(self, attribute, value):
        if value is None:
            return
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 8 for v in value)):
            raise ValueError(f"image_size must be [height, width], each an integer >= 8; got {value!r}")
