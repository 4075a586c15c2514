"""Turning request payloads into frames (HxWx3 uint8 RGB arrays) and frames into payloads.

Accepted forms of one frame:
- a base64 string of PNG or JPEG bytes, optionally as a data URL (``data:image/png;base64,...``);
- raw PNG or JPEG bytes (msgpack bodies);
- in msgpack bodies, an ndarray encoded the way openpi-client's msgpack_numpy encodes it
  (decoded by vla.protocol.codec), uint8, HxWx3, or NxHxWx3 for a whole clip.

Nothing here unpickles or evaluates anything. Decoding is two steps: ``probe`` reads each
image's size from its file header (no pixels), so that the service can refuse a request whose
images add up to too many pixels before it decodes any of them (a 523 KB body of black
4096x4096 PNGs once took the old service to 1 GB), and only then ``decode``. Decoding uses
Pillow.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Union

import attrs
import numpy as np

from vla.rewarding.errors import BadRequest, TooLarge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DEFAULT_MAX_PIXELS = 4096 * 4096
MIN_SIDE = 8


def sniff_format(data: bytes) -> str | None:
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def decode_base64(text: str, where: str) -> bytes:
    if not isinstance(text, str):
        raise BadRequest("wrong_type", f"{where}: expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        header, sep, payload = text.partition(",")
        if not sep or ";base64" not in header:
            raise BadRequest("bad_data_url", f"{where}: a data URL must look like data:image/png;base64,<data>")
        text = payload
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("bad_base64", f"{where}: not valid base64 ({exc})") from None


@attrs.frozen
class EncodedImage:
    """A PNG or JPEG whose header has been read and checked; its pixels are not decoded yet."""

    data: bytes
    where: str
    fmt: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe_image(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> EncodedImage:
    """Read a PNG or JPEG's size from its header and check it against ``max_pixels``; no decoding."""
    fmt = sniff_format(data)
    if fmt is None:
        raise BadRequest("bad_image", f"{where}: not a PNG or JPEG image (first bytes {data[:8]!r})")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as img:
            width, height = img.size  # from the header; pixels are not decoded yet
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise BadRequest("bad_image", f"{where}: cannot decode the {fmt.upper()} image ({exc})") from None
    if width * height > max_pixels:
        raise TooLarge("image_too_large", f"{where}: {width}x{height} pixels is over the limit of {max_pixels} pixels")
    if min(width, height) < MIN_SIDE:
        raise BadRequest("bad_image", f"{where}: {width}x{height} is too small (min side {MIN_SIDE})")
    return EncodedImage(data, where, fmt, width, height)


def decode_probed(image: EncodedImage) -> np.ndarray:
    """The pixels of a probed image as HxWx3 uint8 RGB."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image.data), formats=["PNG", "JPEG"]) as img:
            if img.size != (image.width, image.height):
                raise BadRequest("bad_image", f"{image.where}: the image changed size between reads")
            rgb = img.convert("RGB")
            rgb.load()
    except BadRequest:
        raise
    except Image.DecompressionBombError as exc:
        raise TooLarge("image_too_large", f"{image.where}: {exc}") from None
    except Exception as exc:  # truncated data shows only when the pixels are read
        raise BadRequest("bad_image", f"{image.where}: cannot decode the {image.fmt.upper()} image ({exc})") from None
    return np.asarray(rgb, dtype=np.uint8)


def decode_image_bytes(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG or JPEG bytes -> HxWx3 uint8 RGB, refusing images over ``max_pixels`` before decoding."""
    return decode_probed(probe_image(data, where, max_pixels))


def check_array(array: np.ndarray, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A decoded ndarray that must be uint8 frames of shape (H, W, 3) or (N, H, W, 3)."""
    if array.dtype != np.uint8:
        raise BadRequest("bad_dtype", f"{where}: frames must be uint8, got dtype {array.dtype.name}")
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise BadRequest("bad_shape", f"{where}: frames must have shape (H, W, 3) or (N, H, W, 3), got {array.shape}")
    height, width = array.shape[-3], array.shape[-2]
    if height * width > max_pixels:
        raise TooLarge("image_too_large", f"{where}: {width}x{height} pixels is over the limit of {max_pixels} pixels")
    if min(height, width) < MIN_SIDE:
        raise BadRequest("bad_image", f"{where}: {width}x{height} is too small (min side {MIN_SIDE})")
    return array


Frame = Union[EncodedImage, np.ndarray]


def frame_pixels(frame: Frame) -> int:
    if isinstance(frame, EncodedImage):
        return frame.pixels
    return int(frame.shape[0]) * int(frame.shape[1])


def probe_frames(value: Any, where: str, max_pixels: int, max_frames: int) -> list[Frame]:
    """One frame or a list of frames in any accepted form -> arrays and probed (undecoded) images."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequest("no_frames", f"{where}: expected at least one frame")
    frames: list[Frame] = []
    for i, item in enumerate(items):
        here = f"{where}[{i}]" if isinstance(value, list) else where
        if isinstance(item, str):
            frames.append(probe_image(decode_base64(item, here), here, max_pixels))
        elif isinstance(item, (bytes, bytearray)):
            frames.append(probe_image(bytes(item), here, max_pixels))
        elif isinstance(item, np.ndarray):
            array = check_array(item, here, max_pixels)
            frames.extend(list(array) if array.ndim == 4 else [array])
        else:
            raise BadRequest(
                "wrong_type",
                f"{here}: expected a base64 PNG/JPEG string, image bytes or a uint8 ndarray, got {type(item).__name__}",
            )
        if len(frames) > max_frames:
            raise TooLarge("too_many_frames", f"{where}: more than {max_frames} frames in one request")
    if not frames:
        raise BadRequest("no_frames", f"{where}: expected at least one frame")
    return frames


def decode_frames(frames: list[Frame]) -> list[np.ndarray]:
    return [decode_probed(f) if isinstance(f, EncodedImage) else f for f in frames]


def frames_from_payload(value: Any, where: str, max_pixels: int, max_frames: int) -> list[np.ndarray]:
    """``probe_frames`` then ``decode_frames``: for callers with no pixel budget of their own."""
    return decode_frames(probe_frames(value, where, max_pixels, max_frames))


def encode_image(frame: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """HxWx3 uint8 RGB -> PNG or JPEG bytes."""
    from PIL import Image

    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be HxWx3 uint8 RGB, got {frame.dtype} {frame.shape}")
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    elif fmt in ("jpeg", "jpg"):
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"unknown image format {fmt!r} (png or jpeg)")
    return buf.getvalue()


def to_base64(frame: np.ndarray, fmt: str = "png", quality: int = 90) -> str:
    return base64.b64encode(encode_image(frame, fmt, quality)).decode("ascii")


def to_data_url(frame: np.ndarray, fmt: str = "png", quality: int = 90) -> str:
    mime = "image/png" if fmt == "png" else "image/jpeg"
    return f"data:{mime};base64,{to_base64(frame, fmt, quality)}"


def load_image_file(path) -> np.ndarray:
    """A PNG/JPEG file -> HxWx3 uint8 RGB."""
    with open(path, "rb") as fh:
        data = fh.read()
    return decode_image_bytes(data, str(path), max_pixels=1 << 30)


def save_png(path, frame: np.ndarray) -> None:
    with open(path, "wb") as fh:
        fh.write(encode_image(frame, "png"))
