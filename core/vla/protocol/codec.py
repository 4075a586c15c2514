"""msgpack with numpy arrays, byte-compatible with openpi-client's ``msgpack_numpy``.

An array travels as the map ``{b"__ndarray__": True, b"data": <bin>, b"dtype": "<f4", b"shape": [..]}``
and a numpy scalar as ``{b"__npgeneric__": True, b"data": <number>, b"dtype": ...}``, exactly
as openpi's client and server write them, so either side can talk to the other.

Differences from openpi's helpers, none of them visible on the wire:
- decoding is strict: a dtype allow-list (no object, void, complex, structured or big-endian
  dtypes), a declared shape must match the data's length, a size limit on every message, and
  anything malformed raises ``ProtocolError`` with a code instead of whatever msgpack or numpy
  happened to raise. Nothing is ever unpickled or evaluated.
- encoding copies each array once (straight into msgpack's buffer, which is sized up front)
  instead of three times (``tobytes``, the packer, its result), and ``encode`` hands back a
  view of that buffer rather than a copy of it.
- decoded arrays are read-only views of the received bytes (no copy).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from vla.protocol.errors import BAD_DTYPE, BAD_MESSAGE, BAD_MSGPACK, BAD_NDARRAY, TOO_LARGE, ProtocolError

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_NDIM = 8

# dtype strings as numpy's ``dtype.str`` writes them (what openpi sends), and their names.
_ALLOWED = ("|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8")
ALLOWED_DTYPES: dict[str, np.dtype] = {s: np.dtype(s) for s in _ALLOWED}
ALLOWED_DTYPES.update({np.dtype(s).name: np.dtype(s) for s in _ALLOWED})

_NDARRAY_KEYS = frozenset(("__ndarray__", "data", "dtype", "shape"))
_NPGENERIC_KEYS = frozenset(("__npgeneric__", "data", "dtype"))


# ------------------------------------------------------------------------------ encoding


def _contiguous_bytes(array: np.ndarray) -> memoryview:
    array = np.ascontiguousarray(array)
    return memoryview(array.reshape(-1).view(np.uint8))


def _encode_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        check_dtype(obj.dtype)
        return {
            b"__ndarray__": True,
            b"data": _contiguous_bytes(obj),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__} (allowed: maps, lists, str, bytes, numbers, ndarrays)")


def _payload_estimate(obj: Any) -> int:
    """Bytes of the big payloads in ``obj``, to size the packer's buffer once."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes + 64
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return len(obj) + 8
    if isinstance(obj, dict):
        return sum(_payload_estimate(v) for v in obj.values()) + 16 * len(obj)
    if isinstance(obj, (list, tuple)):
        return sum(_payload_estimate(v) for v in obj)
    return 16


def encode(obj: Any) -> memoryview:
    """Pack ``obj`` into msgpack. Returns a view of the packer's buffer (send it, don't keep it)."""
    packer = msgpack.Packer(default=_encode_default, autoreset=False, buf_size=_payload_estimate(obj) + 4096)
    packer.pack(obj)
    return packer.getbuffer()


def encode_bytes(obj: Any) -> bytes:
    return bytes(encode(obj))


# ------------------------------------------------------------------------------ decoding


def check_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype for an allowed dtype (a numpy dtype or its string); ProtocolError otherwise."""
    if isinstance(dtype, np.dtype):
        key = dtype.str
    elif isinstance(dtype, bytes):
        try:
            key = dtype.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(BAD_DTYPE, f"dtype {dtype!r} is not ASCII") from None
    elif isinstance(dtype, str):
        key = dtype
    else:
        raise ProtocolError(BAD_DTYPE, f"dtype must be a string, got {type(dtype).__name__}")
    allowed = ALLOWED_DTYPES.get(key)
    if allowed is None:
        shown = key if len(key) <= 40 else key[:40] + "..."
        raise ProtocolError(
            BAD_DTYPE, f"dtype {shown!r} is not allowed (allowed: bool, (u)int8-64, float16/32/64, little-endian)"
        )
    return allowed


def _text_keys(obj: dict) -> dict | None:
    """The map with bytes keys decoded, or None when a key is neither text nor ASCII bytes."""
    out = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            try:
                key = key.decode("ascii")
            except UnicodeDecodeError:
                return None
        elif not isinstance(key, str):
            return None
        out[key] = value
    return out


def _decode_ndarray(fields: dict) -> np.ndarray:
    if set(fields) != _NDARRAY_KEYS:
        extra = sorted(set(fields) - _NDARRAY_KEYS)
        missing = sorted(_NDARRAY_KEYS - set(fields))
        raise ProtocolError(BAD_NDARRAY, f"ndarray map has missing keys {missing} / extra keys {extra}")
    if fields["__ndarray__"] is not True:
        raise ProtocolError(BAD_NDARRAY, "ndarray map: __ndarray__ must be true")
    data, shape = fields["data"], fields["shape"]
    dtype = check_dtype(fields["dtype"])
    if not isinstance(data, (bytes, memoryview)):  # a memoryview only from vla.protocol.borrowed
        raise ProtocolError(BAD_NDARRAY, f"ndarray data must be bytes, got {type(data).__name__}")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM:
        raise ProtocolError(BAD_NDARRAY, f"ndarray shape must be a list of at most {MAX_NDIM} sizes, got {shape!r:.80}")
    count = 1
    for dim in shape:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise ProtocolError(BAD_NDARRAY, f"ndarray shape must hold whole numbers >= 0, got {shape!r:.80}")
        count *= dim
    if count * dtype.itemsize != len(data):
        raise ProtocolError(
            BAD_NDARRAY,
            f"ndarray shape {tuple(shape)} of {dtype.name} needs {count * dtype.itemsize} bytes, data has {len(data)}",
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _decode_npgeneric(fields: dict) -> np.generic:
    if set(fields) != _NPGENERIC_KEYS or fields["__npgeneric__"] is not True:
        raise ProtocolError(BAD_NDARRAY, "numpy scalar map must hold exactly __npgeneric__ (true), data and dtype")
    dtype = check_dtype(fields["dtype"])
    value = fields["data"]
    if not isinstance(value, (bool, int, float)):
        raise ProtocolError(BAD_NDARRAY, f"numpy scalar data must be a number, got {type(value).__name__}")
    try:
        with np.errstate(all="raise"):
            return dtype.type(value)
    except (OverflowError, ValueError, FloatingPointError, TypeError):
        raise ProtocolError(BAD_NDARRAY, f"{value!r:.40} does not fit a {dtype.name}") from None


def _object_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        fields = _text_keys(obj)
        if fields is None:
            raise ProtocolError(BAD_NDARRAY, "ndarray map has keys that are not text")
        return _decode_ndarray(fields)
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        fields = _text_keys(obj)
        if fields is None:
            raise ProtocolError(BAD_NDARRAY, "numpy scalar map has keys that are not text")
        return _decode_npgeneric(fields)
    return obj


def check_size(data: bytes | bytearray | memoryview, max_bytes: int | None) -> None:
    if max_bytes is not None and len(data) > max_bytes:
        raise ProtocolError(TOO_LARGE, f"message of {len(data)} bytes exceeds the limit of {max_bytes}")


def decode(data: bytes | bytearray | memoryview, max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES) -> Any:
    """Decode one msgpack message, turning ndarray maps into (read-only) arrays."""
    check_size(data, max_bytes)
    try:
        return msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=True, use_list=True)
    except ProtocolError:
        raise
    except RecursionError:
        raise ProtocolError(BAD_MSGPACK, "msgpack nesting is too deep") from None
    except Exception as exc:  # msgpack raises many types for broken input; all mean the same here
        raise ProtocolError(BAD_MSGPACK, f"not valid msgpack: {type(exc).__name__}: {str(exc)[:120]}") from None


def decode_map(data: bytes | bytearray | memoryview, max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES) -> dict:
    """Decode a message that must be a map with text keys."""
    return check_map(decode(data, max_bytes))


def check_map(message: Any) -> dict:
    """``message`` if it is a map with text keys; ProtocolError otherwise."""
    if not isinstance(message, dict):
        raise ProtocolError(BAD_MESSAGE, f"a message must be a msgpack map, got {type(message).__name__}")
    for key in message:
        if not isinstance(key, str):
            raise ProtocolError(BAD_MESSAGE, f"message keys must be text, got {key!r:.60}")
    return message
