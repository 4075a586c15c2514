"""JPEG camera frames (optional, per camera, the client's choice). OpenCV is imported only here,
inside the functions, so that importing the protocol stays light.

Before decoding, the frame's size is read from its JPEG header and compared with the camera
contract, so a tiny message cannot make the server allocate a huge image.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from vla.protocol.errors import BAD_JPEG, BAD_SHAPE, ProtocolError

# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_available() -> bool:
    return importlib.util.find_spec("cv2") is not None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's start-of-frame header, without decoding it."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise ProtocolError(BAD_JPEG, "image bytes are not a JPEG (no start-of-image marker)")
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ProtocolError(BAD_JPEG, f"broken JPEG marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            raise ProtocolError(BAD_JPEG, f"broken JPEG segment length at byte {i}")
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return height, width
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        i += 2 + length
    raise ProtocolError(BAD_JPEG, "JPEG has no frame header")


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an HxWx3 uint8 RGB image as JPEG bytes."""
    import cv2

    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be 1-100, got {quality}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return buf.tobytes()


def decode_jpeg(data: bytes, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Decode JPEG bytes to an HxWx3 uint8 RGB image, checking its size against ``shape`` first."""
    import cv2

    height, width = jpeg_size(data)
    if shape is not None and (height, width) != tuple(shape[:2]):
        raise ProtocolError(BAD_SHAPE, f"JPEG is {height}x{width}, the camera contract says {shape[0]}x{shape[1]}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ProtocolError(BAD_JPEG, "OpenCV could not decode the JPEG")
    if image.shape[:2] != (height, width):
        raise ProtocolError(BAD_JPEG, f"JPEG decoded to {image.shape}, its header says {height}x{width}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
