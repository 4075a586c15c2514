"""Training a LeRobot policy (ACT, Diffusion, SmolVLA) on local LeRobot datasets.

The loop is LeRobot's own recipe, assembled from its public pieces: the policy config and
its optimizer/scheduler presets, ``make_policy`` with the dataset's metadata (feature shapes
and normalisation statistics), ``make_pre_post_processors`` for the batch pipeline, the
dataset's delta timestamps for action chunks and observation history, and Diffusion's
episode-aware sampler. What it adds: several datasets trained as one (their frames
concatenated, their normalisation statistics aggregated), progress reported to `vla train`
(rich), a record of what the checkpoint came from (``vla_train.json``), and a
checkpoint in the layout `vla serve --policy lerobot` loads: ``OUTPUT/pretrained_model``
with the policy config, the weights and both processor pipelines.

lerobot and torch are imported inside ``train`` only.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vla.training.dataset_info import DatasetError, check_same_features, read_dataset_summary
from vla.training.trainer import TrainRequest, TrainResult, TrainingError
from vla_lerobot.config import LeRobotTrainerConfig

Progress = Callable[[int, int, dict], None]


def backbone_weights_unavailable(name: str, timeout_s: float = 3.0) -> str | None:
    """Why torchvision's pretrained weights ``name`` (e.g. "ResNet18_Weights.IMAGENET1K_V1") cannot
    be had, or None when they are in the torch cache or can be downloaded."""
    import torch
    from torchvision.models import get_weight

    try:
        url = get_weight(name).url
    except Exception:  # an unknown name: make_policy says so in its own words
        return None
    if (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file():
        return None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return None
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} cannot be fetched ({getattr(exc, 'reason', exc)})"


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class LeRobotTrainer:
    """Trains one LeRobot policy type (``act``, ``diffusion``, ``smolvla``)."""

    def __init__(self, policy_type: str, config: LeRobotTrainerConfig | None = None):
        self.policy_type = policy_type
        self.config = config or LeRobotTrainerConfig()

    # ------------------------------------------------------------ building blocks

    def policy_config(self, options: dict[str, Any], device: str):
        """The LeRobot config for this policy type with the lab's and the command line's overrides."""
        from lerobot.policies.factory import make_policy_config

        overrides = {**self.config.policy, **options}
        if self.config.init_from:
            from lerobot.configs.policies import PreTrainedConfig

            cfg = PreTrainedConfig.from_pretrained(self.config.init_from)
            if cfg.type != self.policy_type:
                raise TrainingError(f"init_from {self.config.init_from} is a {cfg.type} policy, not {self.policy_type}")
            for key, value in overrides.items():
                if not hasattr(cfg, key):
                    raise TrainingError(f"{self.policy_type} has no option {key!r}")
                setattr(cfg, key, value)
            cfg.pretrained_path = self.config.init_from
        else:
            try:
                cfg = make_policy_config(self.policy_type, **overrides)
            except TypeError as exc:
                raise TrainingError(f"bad {self.policy_type} option: {exc}") from None
            except ValueError as exc:
                raise TrainingError(f"bad {self.policy_type} option: {exc}") from None
        cfg.device = device
        return cfg

    def _offline_backbone(self, cfg, options: dict[str, Any], progress: Progress | None) -> None:
        """ACT and Diffusion start their vision backbone from ImageNet weights that torchvision
        downloads; offline, train it from scratch instead of dying in the download, and say so."""
        name = getattr(cfg, "pretrained_backbone_weights", None)
        if not name or "pretrained_backbone_weights" in options or "pretrained_backbone_weights" in self.config.policy:
            return
        why = backbone_weights_unavailable(name)
        if why is None:
            return
        cfg.pretrained_backbone_weights = None
        if progress is not None:
            progress(0, 0, {"note": f"pretrained backbone {name} unavailable: {why}; training the backbone from "
                                    f"scratch (-o pretrained_backbone_weights=null says so explicitly)"})

    def _thaw_backbone_norm(self, cfg, policy, progress: Progress | None) -> int:
        """ACT's ResNet freezes its batch norms (fit for ImageNet weights); from scratch they are
        never fitted and the backbone trains unnormalised. Train them instead (see backbone_norm)."""
        if (not self.config.train_backbone_norm or cfg.type != "act" or getattr(cfg, "pretrained_backbone_weights", None)
                or getattr(getattr(policy, "model", None), "backbone", None) is None):
            return 0
        from vla_lerobot.backbone_norm import thaw

        count = thaw(policy.model.backbone)
        if count and progress is not None:
            progress(0, 0, {"note": f"the backbone trains from scratch: its {count} batch norms train too "
                                    f"(ACT freezes them for ImageNet weights); the checkpoint holds them frozen"})
        return count

    def _features(self, ds_meta, cfg) -> None:
        from lerobot.configs.types import FeatureType
        from lerobot.datasets.utils import dataset_to_policy_features

        features = dataset_to_policy_features(ds_meta.features)
        cfg.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
        cfg.input_features = {
            k: f
            for k, f in features.items()
            if f.type is not FeatureType.ACTION and (self.config.use_environment_state or f.type is not FeatureType.ENV)
        }
        if not cfg.output_features:
            raise TrainingError("the dataset has no 'action' feature to learn")
        if self.config.cameras is not None:
            recorded = [k[len("observation.images."):] for k, f in cfg.input_features.items() if f.type is FeatureType.VISUAL]
            unknown = [c for c in self.config.cameras if c not in recorded]
            if unknown:
                raise TrainingError(f"cameras: the dataset has no camera {', '.join(unknown)} (it has {', '.join(recorded)})")
            cfg.input_features = {k: f for k, f in cfg.input_features.items() if f.type is not FeatureType.VISUAL
                                  or k[len("observation.images."):] in self.config.cameras}

    def _resize_features(self, cfg, ds_meta, size: tuple[int, int]) -> None:
        """The policy's cameras take frames of ``size``; only video cameras can be resized."""
        from lerobot.configs.types import FeatureType, PolicyFeature

        still = [k for k, f in ds_meta.features.items() if f["dtype"] == "image" and k in cfg.input_features]
        if still:
            raise TrainingError(f"image_size resizes video cameras only; {', '.join(still)} are stored as images")
        for key, feature in list(cfg.input_features.items()):
            if feature.type is FeatureType.VISUAL:
                cfg.input_features[key] = PolicyFeature(type=feature.type, shape=(feature.shape[0], *size))

    def _cache_fits(self, total_frames: int, ds_meta, size: tuple[int, int] | None = None) -> bool:
        """Whether every decoded frame of the datasets fits the configured cache (as uint8)."""
        if self.config.cache_frames_gb <= 0 or self.config.num_workers > 0:
            return False
        per_frame = 0
        for feature in ds_meta.features.values():
            if feature["dtype"] in ("video", "image"):
                shape = feature["shape"] if size is None else (*size, feature["shape"][-1])
                per_frame += int(np.prod(shape))
        return per_frame * total_frames <= self.config.cache_frames_gb * 1e9

    # ------------------------------------------------------------------- training

    def train(self, request: TrainRequest, progress: Progress | None = None) -> TrainResult:
        import torch
        from lerobot.datasets.compute_stats import aggregate_stats
        from lerobot.datasets.factory import resolve_delta_timestamps
        from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
        from lerobot.datasets.sampler import EpisodeAwareSampler
        from lerobot.policies.factory import make_policy, make_pre_post_processors

        started, cpu_started = time.monotonic(), time.process_time()
        torch.manual_seed(request.seed)
        device = _device(request.device or self.config.device)
        roots = [Path(r) for r in request.datasets]
        try:
            check_same_features([read_dataset_summary(r) for r in roots])
        except DatasetError as exc:
            raise TrainingError(str(exc)) from None
        # repo ids are labels only: the data are read from each root
        metas = [LeRobotDatasetMetadata(f"local/{r.name}", root=r) for r in roots]
        ds_meta = metas[0]  # feature shapes and fps (the same in every dataset, checked above)
        # normalisation statistics over the union, weighted by each dataset's frame counts
        stats = ds_meta.stats if len(metas) == 1 else aggregate_stats([m.stats for m in metas])
        cfg = self.policy_config(dict(request.options), device)
        self._offline_backbone(cfg, request.options, progress)
        self._features(ds_meta, cfg)
        delta = resolve_delta_timestamps(cfg, ds_meta)
        kwargs = {"video_backend": self.config.video_backend} if self.config.video_backend else {}
        parts = [LeRobotDataset(m.repo_id, root=r, delta_timestamps=delta, **kwargs) for m, r in zip(metas, roots)]
        total_frames = sum(m.total_frames for m in metas)

        size = tuple(self.config.image_size) if self.config.image_size else None
        if size is not None:
            self._resize_features(cfg, ds_meta, size)
        if ds_meta.video_keys and self._cache_fits(total_frames, ds_meta, size):
            from vla_lerobot.frame_cache import cache_decoded_frames

            for part in parts:
                cache_decoded_frames(part, size=size)
        elif size is not None and ds_meta.video_keys:
            from vla_lerobot.frame_cache import resize_queries

            for part in parts:
                resize_queries(part, size)
        # one index space over the union: dataset k's frames follow dataset k-1's
        dataset = parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
        try:
            policy = make_policy(cfg, ds_meta=ds_meta)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise TrainingError(
                f"{self.policy_type}: pretrained weights could not be downloaded ({getattr(exc, 'reason', exc)}); "
                f"put them in the cache first, or train from scratch where the policy allows it"
            ) from None
        thawed = self._thaw_backbone_norm(cfg, policy, progress)
        preprocessor, postprocessor = make_pre_post_processors(cfg, dataset_stats=stats)
        optimizer_cfg = cfg.get_optimizer_preset()
        optimizer = optimizer_cfg.build(policy.get_optim_params())
        scheduler_cfg = cfg.get_scheduler_preset()
        scheduler = scheduler_cfg.build(optimizer, request.steps) if scheduler_cfg is not None else None

        if hasattr(cfg, "drop_n_last_frames"):
            # Diffusion: skip starts whose action horizon would run past the episode's end
            starts, ends = union_episode_bounds(metas, [len(part) for part in parts])
            sampler = EpisodeAwareSampler(
                starts,
                ends,
                drop_n_last_frames=cfg.drop_n_last_frames,
                shuffle=True,
            )
            shuffle = False
        else:
            sampler, shuffle = None, True
        generator = torch.Generator().manual_seed(request.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=request.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.config.num_workers,
            drop_last=False,
            generator=generator if shuffle else None,
            pin_memory=device.startswith("cuda"),
        )

        def save(folder: Path, steps: int) -> Path:
            """``folder/pretrained_model`` and ``folder/vla_train.json`` for the policy as it is now."""
            model = policy
            if thawed:
                import copy

                from vla_lerobot.backbone_norm import freeze

                model = copy.deepcopy(policy) if steps < request.steps else policy
                freeze(model.model.backbone)  # the checkpoint stays a plain LeRobot ACT
            was_training = model.training
            model.eval()
            checkpoint = folder / "pretrained_model"
            checkpoint.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(checkpoint)
            preprocessor.save_pretrained(checkpoint)
            postprocessor.save_pretrained(checkpoint)
            if was_training and model is policy and steps < request.steps:
                policy.train()  # an intermediate checkpoint of an unthawed policy: training goes on
            seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
            summary = {
                "policy": self.policy_type,
                # one path for one dataset (what `vla doctor --checkpoint` shows), else all of them
                "dataset": str(roots[0].resolve()) if len(roots) == 1 else " + ".join(str(r.resolve()) for r in roots),
                # where the checkpoint came from: every dataset, its size and its tasks
                "datasets": [
                    {"path": str(r.resolve()), "frames": m.total_frames, "episodes": m.total_episodes,
                     "tasks": _task_texts(m), "robot_type": m.robot_type}
                    for r, m in zip(roots, metas)
                ],
                "frames": total_frames,
                "episodes": sum(m.total_episodes for m in metas),
                "steps": steps,
                "batch_size": request.batch_size,
                "epochs": steps * request.batch_size / max(total_frames, 1),
                "final_loss": losses[-1] if losses else None,  # the last step's, as printed
                "mean_loss_last_10": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
                # the mean loss of each block of 100 steps: whether it was still falling
                "loss_per_100_steps": [round(sum(b) / len(b), 5) for b in
                                       (losses[i:i + 100] for i in range(0, len(losses), 100))],
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "device": device,
                "image_size": list(size) if size else None,
                "backbone_norm": "trained" if thawed else "frozen",
                "options": {k: repr(v) for k, v in request.options.items()},
            }
            summary.update(continued_from(self.config.init_from, summary))
            (folder / "vla_train.json").write_text(json.dumps(summary, indent=2))
            return checkpoint

        policy.train()
        losses: list[float] = []
        step = 0
        batches = iter(loader)
        every = self.config.save_every
        while step < request.steps:
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                continue
            batch = preprocessor(batch)
            loss, _ = policy.forward(batch)
            if not math.isfinite(loss.item()):
                raise TrainingError(f"loss became {loss.item()} at step {step + 1}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), optimizer_cfg.grad_clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            step += 1
            losses.append(float(loss.item()))
            if progress is not None:
                progress(step, request.steps, {"loss": losses[-1]})
            if every and step % every == 0 and step < request.steps:
                save(Path(request.output) / "checkpoints" / f"{step:06d}", step)

        checkpoint = save(Path(request.output), step)
        seconds, cpu_seconds = time.monotonic() - started, time.process_time() - cpu_started
        final = losses[-1] if losses else None  # the last step's, as printed
        return TrainResult(checkpoint=checkpoint, steps=step, final_loss=final, seconds=seconds, cpu_seconds=cpu_seconds)


def continued_from(init_from: str | None, summary: dict) -> dict:
    """What a run that started from ``init_from`` adds to its record: where it started and, when
    that checkpoint is one of `vla train`'s (its vla_train.json beside it), the totals of the
    runs together, so a CPU run continued after a stop still says how long it trained."""
    if not init_from:
        return {}
    record: dict = {"init_from": init_from}
    earlier = Path(init_from).parent / "vla_train.json"
    try:
        before = json.loads(earlier.read_text()) if Path(init_from).is_dir() else None
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict) and isinstance(before.get("steps"), int):
        for key, field in (("steps_total", "steps"), ("epochs_total", "epochs"), ("cpu_seconds_total", "cpu_seconds"),
                           ("seconds_total", "seconds")):
            record[key] = before.get(key, before.get(field, 0)) + summary[field]
        record["init_from_steps"] = before.get("steps_total", before["steps"])
    return record


def union_episode_bounds(metas, lengths: list[int]) -> tuple[list[int], list[int]]:
    """Each episode's first and end frame index in the concatenation of the datasets: dataset k's
    indices are shifted by the frames of the datasets before it."""
    starts, ends, offset = [], [], 0
    for meta, length in zip(metas, lengths, strict=True):
        starts += [offset + int(i) for i in meta.episodes["dataset_from_index"]]
        ends += [offset + int(i) for i in meta.episodes["dataset_to_index"]]
        offset += length
    return starts, ends


def _task_texts(meta) -> list[str]:
    """The task texts of a dataset (LeRobot keeps them as the index of ``meta.tasks``)."""
    try:
        return [str(t) for t in meta.tasks.index]
    except AttributeError:
        return []


def act_trainer(config: LeRobotTrainerConfig) -> LeRobotTrainer:
    return LeRobotTrainer("act", config)


def diffusion_trainer(config: LeRobotTrainerConfig) -> LeRobotTrainer:
    return LeRobotTrainer("diffusion", config)


def smolvla_trainer(config: LeRobotTrainerConfig) -> LeRobotTrainer:
    return LeRobotTrainer("smolvla", config)
