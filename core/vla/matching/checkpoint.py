"""What a trained policy expects, whichever plugin made it: cameras, chunking, how long it trained.

A checkpoint's layout belongs to its policy plugin, so core does not read it: a policy plugin
names a reader in ``PolicySpec.checkpoint_info`` (an import path to ``(path, lab_config) ->
CheckpointInfo | None``; None means "not one of mine"), and ``read_checkpoint`` asks each
installed policy plugin in turn. ``from_metadata`` builds the same record from a policy
server's metadata frame (what `vla run` sees), which says less: no training length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs


class CheckpointError(ValueError):
    """No installed policy plugin can read the folder; the message names what was tried."""


@attrs.frozen
class TrainingRun:
    """How the checkpoint was trained, from its own training config."""

    steps: int
    batch_size: int
    dataset_frames: int | None = None  # the frames of the dataset it was trained on, when recorded
    dataset_episodes: int | None = None
    dataset: str | None = None  # path or repo id, as recorded
    source: str = ""  # the file these numbers were read from

    @property
    def samples(self) -> int:
        return self.steps * self.batch_size


@attrs.frozen
class CheckpointInfo:
    policy: str  # e.g. "lerobot/act"
    path: str
    cameras: dict[str, tuple[int, int, int]]  # the policy's camera names -> (h, w, 3)
    # dataset camera key -> the policy's camera name, applied at training (LeRobot's rename_map)
    training_rename: dict[str, str] = attrs.field(factory=dict)
    # the lab's camera name -> the policy's camera name, applied when serving (plugins.<policy>.camera_map)
    serving_rename: dict[str, str] = attrs.field(factory=dict)
    resize_images: bool = False  # the server resizes frames of another size instead of refusing them
    chunk_size: int | None = None  # actions predicted per call
    n_action_steps: int | None = None  # actions the policy was built to execute before predicting again
    horizon: int | None = None  # actions a call answers (what `vla serve` sends)
    supports_rtc: bool = False
    reads_task: bool | None = None  # does the policy read the task text (None: unknown)
    state_dim: int | None = None
    action_dim: int | None = None
    units: str | None = None  # "radians" when the plugin says so
    training: TrainingRun | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)


def read_checkpoint(path: str | Path, loaded=None) -> CheckpointInfo:
    """The first installed policy plugin's reading of ``path``; CheckpointError if none can."""
    from vla.plugins import get_registry

    registry = get_registry()
    tried = []
    for entry in registry.components.get("policies", {}).values():
        spec = entry.spec
        reader = getattr(spec, "checkpoint_info", None)
        if not reader:
            continue
        tried.append(spec.name)
        from vla.specs import resolve_import_path

        plugin_config = None
        if loaded is not None and spec.config is not None:
            plugin_config = loaded.plugin_config(spec)
        info = resolve_import_path(reader)(Path(path), plugin_config)
        if info is not None:
            return info
    if not Path(path).exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    raise CheckpointError(
        f"{path}: no installed policy plugin reads this checkpoint (tried: {', '.join(tried) or 'none declares a reader'})"
    )


def from_metadata(metadata: dict[str, Any], url: str = "") -> CheckpointInfo:
    """What a policy server's metadata frame says about the policy it serves (in the lab's camera names)."""
    extra = metadata.get("extra") if isinstance(metadata.get("extra"), dict) else {}
    # A server lists cameras in the lab's names; extra.camera_map (lab -> policy) says what the
    # policy calls them, which is what its training dataset called them.
    camera_map = {str(k): str(v) for k, v in (extra.get("camera_map") or {}).items()}
    cameras = {}
    for name, shape in (metadata.get("cameras") or {}).items():
        cameras[camera_map.get(str(name), str(name))] = tuple(int(v) for v in shape)
    caps = metadata.get("capabilities") if isinstance(metadata.get("capabilities"), dict) else {}
    horizon = metadata.get("horizon")
    return CheckpointInfo(
        policy=str(metadata.get("policy", "?")),
        path=url,
        cameras=cameras,
        serving_rename=camera_map,
        horizon=int(horizon) if isinstance(horizon, int) else None,
        chunk_size=int(horizon) if isinstance(horizon, int) else None,
        n_action_steps=extra.get("n_action_steps") if isinstance(extra.get("n_action_steps"), int) else None,
        supports_rtc=bool(caps.get("rtc", False)),
        state_dim=metadata.get("state_dim"),
        action_dim=metadata.get("action_dim"),
        units=extra.get("units"),
    )


def fetch_metadata(url: str, api_key: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
    """The metadata frame of the policy server at ``url`` (connect, read it, close)."""
    import asyncio

    from vla.protocol.client import PolicyClient

    async def get():
        client = await PolicyClient.connect(url, api_key=api_key, open_timeout=timeout_s)
        try:
            return dict(client.metadata)
        finally:
            await client.close()

    return asyncio.run(get())
