"""What a LeRobot checkpoint expects and how it was trained, read from its JSON files (no torch).

For `vla doctor --checkpoint` (``PolicySpec.checkpoint_info``). A checkpoint folder is a
``pretrained_model`` (``config.json``: policy type, input features, chunk size, action steps),
found the way the backend finds it. Its training length comes from the training config saved
with it: ``vla_train.json`` beside ``pretrained_model`` (what `vla train` writes: steps, batch,
the dataset's frames and episodes) or LeRobot's own ``train_config.json`` inside it (what
``lerobot-train`` writes: steps, batch size, the dataset's repo id and ``rename_map``).
"""

from __future__ import annotations

import json
from pathlib import Path

from vla.matching.checkpoint import CheckpointInfo, TrainingRun
from vla_lerobot.config import RTC_POLICY_TYPES, LeRobotPolicyConfig

IMAGE_PREFIX = "observation.images."
# Policy types whose model reads the task text (a language model or text encoder inside).
LANGUAGE_POLICY_TYPES = frozenset({"smolvla", "pi0", "pi05", "pi0_fast", "xvla", "groot", "wall_x"})


def _candidates(path: Path) -> list[Path]:
    return [path, path / "pretrained_model", path / "checkpoints" / "last" / "pretrained_model"]


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_checkpoint_info(path: Path, config: LeRobotPolicyConfig | None = None) -> CheckpointInfo | None:
    folder = next((c for c in _candidates(Path(path)) if (c / "config.json").is_file()), None)
    if folder is None:
        return None
    cfg = _load(folder / "config.json")
    policy_type = cfg.get("type")
    if not isinstance(policy_type, str) or "input_features" not in cfg:
        return None  # a config.json, but not a LeRobot policy's
    cameras, state_dim = {}, None
    for key, feature in cfg.get("input_features", {}).items():
        shape = [int(v) for v in feature.get("shape", [])]
        if feature.get("type") == "VISUAL" and key.startswith(IMAGE_PREFIX) and len(shape) == 3:
            c, h, w = shape
            cameras[key[len(IMAGE_PREFIX):]] = (h, w, c)
        elif feature.get("type") == "STATE" and shape:
            state_dim = shape[0]
    action = cfg.get("output_features", {}).get("action", {}).get("shape") or [None]
    chunk_size = cfg.get("chunk_size", cfg.get("horizon"))
    n_action_steps = cfg.get("n_action_steps")
    horizon = n_action_steps if policy_type == "diffusion" else (chunk_size or n_action_steps)
    config = config or LeRobotPolicyConfig(path=str(path))
    training, rename = _training(folder)
    return CheckpointInfo(
        policy=f"lerobot/{policy_type}",
        path=str(folder),
        cameras=cameras,
        training_rename=rename,
        serving_rename=dict(config.camera_map),
        resize_images=bool(config.resize_images),
        chunk_size=int(chunk_size) if chunk_size is not None else None,
        n_action_steps=int(n_action_steps) if n_action_steps is not None else None,
        horizon=int(horizon) if horizon is not None else None,
        supports_rtc=policy_type in RTC_POLICY_TYPES and config.rtc,
        reads_task=policy_type in LANGUAGE_POLICY_TYPES,
        state_dim=state_dim,
        action_dim=action[0],
        training=training,
    )


def _training(folder: Path) -> tuple[TrainingRun | None, dict[str, str]]:
    """The training run and the dataset->policy camera rename map the checkpoint was trained with."""
    rename: dict[str, str] = {}
    pre = _load(folder / "policy_preprocessor.json")
    for step in pre.get("steps", []):
        if step.get("registry_name") == "rename_observations_processor":
            rename.update((step.get("config") or {}).get("rename_map") or {})
    vla_summary = folder.parent / "vla_train.json"
    lerobot_config = folder / "train_config.json"
    training = None
    if vla_summary.is_file():
        s = _load(vla_summary)
        if isinstance(s.get("steps"), int) and isinstance(s.get("batch_size"), int):
            training = TrainingRun(steps=s["steps"], batch_size=s["batch_size"], dataset_frames=s.get("frames"),
                                   dataset_episodes=s.get("episodes"), dataset=s.get("dataset"), source=str(vla_summary))
    if lerobot_config.is_file():
        t = _load(lerobot_config)
        rename.update(t.get("rename_map") or {})
        if training is None and isinstance(t.get("steps"), int) and isinstance(t.get("batch_size"), int):
            dataset = t.get("dataset") or {}
            training = TrainingRun(steps=t["steps"], batch_size=t["batch_size"],
                                   dataset=dataset.get("root") or dataset.get("repo_id"), source=str(lerobot_config))
    strip = {k[len(IMAGE_PREFIX):] if k.startswith(IMAGE_PREFIX) else k: v[len(IMAGE_PREFIX):] if v.startswith(IMAGE_PREFIX) else v
             for k, v in rename.items()}
    return training, strip
