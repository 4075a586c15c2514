"""Preparing frames for a VLM: subsample a clip, downscale, encode as data URLs."""

from __future__ import annotations

from typing import Any

import numpy as np


def subsample(frames: list[Any], max_frames: int) -> list[Any]:
    """At most ``max_frames`` frames spread evenly over the clip; the last frame is always kept."""
    if len(frames) <= max_frames:
        return list(frames)
    if max_frames == 1:
        return [frames[-1]]
    idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    return [frames[i] for i in idx]


def to_pil(frame: Any, max_side: int | None):
    from PIL import Image

    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {array.dtype} {array.shape}")
    image = Image.fromarray(array)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
    return image


def to_data_url(image, fmt: str = "jpeg", quality: int = 90) -> str:
    import base64
    import io

    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG")
        mime = "image/png"
    elif fmt in ("jpeg", "jpg"):
        image.save(buf, format="JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        raise ValueError(f"image_format must be jpeg or png, got {fmt!r}")
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def render_prompt(template: str, goal: str, n_frames: int) -> str:
    try:
        return template.format(goal=goal, n_frames=n_frames)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"prompt template {template!r} is invalid ({exc}); placeholders: {{goal}}, {{n_frames}}") from None
