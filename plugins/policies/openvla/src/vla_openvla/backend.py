"""The `openvla` policy backend: OpenVLA-7B through transformers on a GPU.

The model and its processor come from the hub (or a local folder) with
``AutoModelForVision2Seq`` / ``AutoProcessor`` and ``trust_remote_code=True`` (OpenVLA's
modelling code lives in its model repository, not in transformers; pin ``revision``), in
bf16, weights from safetensors only. One request = one image of the configured camera and
the task text; the answer is a chunk of one 7-DoF action in the units of the ``unnorm_key``
dataset (end-effector deltas and a gripper command, not joint positions).

Generation is greedy with as many new tokens as the action has dimensions; the tokens are
decoded with ``vla_openvla.actions`` (OpenVLA's bins and q01/q99 un-normalisation). OpenVLA's
``generate`` supports one sequence at a time, so a batch is answered observation by observation.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vla.policy import CameraContract, PolicyInfo
from vla_openvla import actions as A
from vla_openvla.config import OpenVLAConfig

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


class OpenVLABackend:
    def __init__(self, config: OpenVLAConfig):
        self.config = config
        self._lock = threading.Lock()
        self._model = None
        self._processor = None
        self._stats: dict | None = None
        self._vocab_size: int | None = None
        self._action_dim = 7
        self._device = None
        self._dtype = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForVision2Seq, AutoProcessor

        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, self.config.dtype)
        kwargs: dict[str, Any] = {"trust_remote_code": True, "revision": self.config.revision}
        processor = AutoProcessor.from_pretrained(self.config.model, **kwargs)
        model_kwargs = dict(kwargs, torch_dtype=dtype, low_cpu_mem_usage=True, use_safetensors=True)
        if self.config.attn_implementation:
            model_kwargs["attn_implementation"] = self.config.attn_implementation
        model = AutoModelForVision2Seq.from_pretrained(self.config.model, **model_kwargs).to(device)
        model.eval()
        self.attach(model, processor, device=device, dtype=dtype)

    def attach(self, model, processor, device="cpu", dtype=None) -> None:
        """Use an already loaded model and processor (what ``_load`` does after loading)."""
        cfg = model.config
        self._stats = A.select_action_stats(getattr(cfg, "norm_stats", None), self.config.unnorm_key)
        self._action_dim = len(self._stats["q01"]) if self._stats is not None else 7
        self._vocab_size = A.action_vocab_size(cfg.text_config.vocab_size, getattr(cfg, "pad_to_multiple_of", 0))
        self._model, self._processor, self._device, self._dtype = model, processor, device, dtype

    def info(self) -> PolicyInfo:
        size = self.config.image_size
        return PolicyInfo(
            name=f"openvla/{self.config.model.rstrip('/').split('/')[-1]}",
            cameras=(CameraContract(self.config.camera, (size, size, 3)),),
            state_dim=0,
            action_dim=self._action_dim,
            horizon=1,
            supports_rtc=False,
            max_batch=1,
            extra={
                "action_space": "end_effector_delta",
                "action_names": list(ACTION_NAMES[: self._action_dim]),
                "unnorm_key": self.config.unnorm_key,
                "any_image_size": True,  # the processor resizes
            },
        )

    def warmup(self) -> None:
        self._load()
        size = self.config.image_size
        self.infer([{f"observation.images.{self.config.camera}": np.zeros((size, size, 3), np.uint8), "task": "pick up the cube"}])

    def reset(self) -> None:
        pass  # OpenVLA is stateless between requests

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        self._load()
        images = [self._image(obs, i) for i, obs in enumerate(batch)]
        with self._lock:
            return [self._predict(image, str(obs.get("task") or "")) for image, obs in zip(images, batch)]

    def _image(self, obs: dict[str, Any], index: int):
        from PIL import Image

        key = f"observation.images.{self.config.camera}"
        frame = obs.get(key)
        if frame is None:
            raise ValueError(f"observation {index}: missing {key!r} (OpenVLA reads the {self.config.camera} camera)")
        if isinstance(frame, (bytes, bytearray)):
            import io

            return Image.open(io.BytesIO(bytes(frame))).convert("RGB")
        array = np.asarray(frame)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"observation {index}: {key}: expected a uint8 HxWx3 RGB image, got {array.dtype} {array.shape}")
        return Image.fromarray(array).convert("RGB")

    def _predict(self, image, task: str) -> np.ndarray:
        import torch

        if not task.strip():
            raise ValueError("OpenVLA needs a task instruction (the observation's 'task')")
        inputs = self._processor(A.prompt(task, self.config.lowercase_instruction), image)
        inputs = inputs.to(self._device, dtype=self._dtype) if self._dtype is not None else inputs.to(self._device)
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if not bool(torch.all(input_ids[:, -1] == A.EMPTY_TOKEN_ID)):
            # OpenVLA was trained with the empty token right after "Out:"
            extra = torch.full((input_ids.shape[0], 1), A.EMPTY_TOKEN_ID, dtype=input_ids.dtype, device=input_ids.device)
            input_ids = torch.cat([input_ids, extra], dim=1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(extra, dtype=mask.dtype)], dim=1)
        kwargs = {"input_ids": input_ids, "pixel_values": inputs["pixel_values"]}
        if mask is not None:
            kwargs["attention_mask"] = mask
        with torch.inference_mode():
            generated = self._model.generate(**kwargs, max_new_tokens=self._action_dim, do_sample=False)
        tokens = generated[0, -self._action_dim :].cpu().numpy()
        return A.decode_actions(tokens, self._vocab_size, self._stats).reshape(1, self._action_dim)
