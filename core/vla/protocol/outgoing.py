"""A client's message as one masked websocket frame, written in one pass over its large arrays.

RFC 6455 makes a client mask every frame it sends. Packed by msgpack and sent through picows, an
arm's two 480x640 frames (1.8 MB) are read and written twice on the way out: once packing them
into msgpack's buffer, once masking that buffer into picows's write buffer. Here each large array
is XORed with the mask straight from its own memory into the frame, so it is read once; the small
parts are packed by msgpack as usual. On this 2-core machine that is about a tenth of the round
trip (`bench/transport.py`).

The bytes mean what `codec.encode` writes (openpi's ``msgpack_numpy`` layout, array maps with
bytes keys), with two liberties msgpack allows: an array's map lists ``data`` last, and the
headers before it may be wider than needed, so that the array's bytes start 4-aligned in the
frame and the XOR runs on whole 32-bit words at full speed. Every msgpack reader takes that.
"""

from __future__ import annotations

import functools
import random
import struct
from typing import Any

import msgpack
import numpy as np

from vla.protocol.codec import _encode_default, check_dtype

LARGE = 64 * 1024  # arrays (and byte strings) from this size are masked from their own memory
_ALIGN = 64  # where the payload starts in the frame's buffer


def _str_headers(n: int) -> list[bytes]:
    """The headers msgpack allows for a string of ``n`` bytes, narrowest first."""
    out = []
    if n < 32:
        out.append(bytes([0xA0 | n]))
    if n < 256:
        out.append(b"\xd9" + bytes([n]))
    if n < 65536:
        out.append(b"\xda" + struct.pack(">H", n))
    out.append(b"\xdb" + struct.pack(">I", n))
    return out


def _map_headers(n: int) -> list[bytes]:
    out = [bytes([0x80 | n])] if n < 16 else []
    if n < 65536:
        out.append(b"\xde" + struct.pack(">H", n))
    out.append(b"\xdf" + struct.pack(">I", n))
    return out


def _bin_header(n: int) -> bytes:
    return b"\xc6" + struct.pack(">I", n)  # bin32: any size


_ARRAY_MAPS = _map_headers(4)


@functools.lru_cache(maxsize=64)
def _array_head(dtype: str, shape: tuple[int, ...]) -> bytes:
    """An array map's entries up to its data's bin header, ``data`` last."""
    pack = msgpack.Packer().pack
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return (pack(b"__ndarray__") + pack(True) + pack(b"dtype") + pack(dtype) + pack(b"shape") + pack(list(shape))
            + pack(b"data") + _bin_header(nbytes))


def _large(value: Any) -> memoryview | None:
    """The bytes of a value worth masking from its own memory, or None."""
    if isinstance(value, np.ndarray) and value.nbytes >= LARGE:
        check_dtype(value.dtype)
        return memoryview(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) >= LARGE:
        return memoryview(value).cast("B")
    return None


def _segments(message: dict[str, Any]) -> tuple[list[bytes | memoryview], int]:
    """``message`` as msgpack in pieces (small packed bytes, large raw buffers), each large buffer
    starting at a payload offset divisible by 4; and the payload's length."""
    pieces: list[bytes | memoryview] = []
    pending = bytearray(_map_headers(len(message))[0])
    pack = msgpack.Packer(default=_encode_default).pack  # one packer per message: packb makes one per call

    offset = 0  # of ``pending``'s start in the payload
    for key, value in message.items():
        data = _large(value)
        if data is None:
            pending += pack(key) + pack(value)
            continue
        if isinstance(value, np.ndarray):
            head, maps = _array_head(value.dtype.str, value.shape), _ARRAY_MAPS
        else:
            head, maps = _bin_header(len(data)), [b""]
        if not isinstance(key, str):
            raise TypeError(f"message keys must be text, got {type(key).__name__}")
        name = key.encode()
        here = offset + len(pending)
        choice = None
        for key_head in _str_headers(len(name)):
            for map_head in maps:
                if (here + len(key_head) + len(name) + len(map_head) + len(head)) % 4 == 0:
                    choice = key_head + name + map_head
                    break
            if choice is not None:
                break
        if choice is None:  # no width lines it up (a very long key): correct, just unaligned
            choice = _str_headers(len(name))[0] + name + maps[0]
        pending += choice + head
        pieces.append(bytes(pending))
        pieces.append(data)
        offset += len(pending) + len(data)
        pending = bytearray()
    if pending:
        pieces.append(bytes(pending))
        offset += len(pending)
    return pieces, offset


def _frame_header(size: int) -> bytes:
    """FIN + binary, the mask bit, and the payload length in the fewest bytes (RFC 6455 section 5.2)."""
    if size < 126:
        return bytes((0x82, 0x80 | size))
    if size < 65536:
        return bytes((0x82, 0x80 | 126)) + struct.pack(">H", size)
    return bytes((0x82, 0x80 | 127)) + struct.pack(">Q", size)


def _xor_small(piece: bytes, key: bytes) -> bytes:
    """``piece`` XOR the (rotated) mask key, for the few hundred bytes between the arrays."""
    n = len(piece)
    tiled = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(piece, "little") ^ int.from_bytes(tiled, "little")).to_bytes(n, "little")


def masked_frame(message: dict[str, Any], mask_key: bytes | None = None) -> memoryview:
    """One FIN binary websocket frame, client-masked, carrying ``message`` as msgpack.

    A fresh buffer every call: the transport may keep a view of what it has not sent yet."""
    pieces, size = _segments(message)
    key = mask_key if mask_key is not None else random.getrandbits(32).to_bytes(4, "little")
    if len(key) != 4:
        raise ValueError("a websocket mask key is 4 bytes")
    keys = [key[p:] + key[:p] for p in range(4)]  # the key as it falls on a payload offset p (mod 4)
    words = [np.uint32(int.from_bytes(k, "little")) for k in keys]
    header = _frame_header(size) + key
    buffer = np.empty(size + len(header) + _ALIGN, np.uint8)
    start = (-(buffer.ctypes.data + len(header))) % _ALIGN  # the payload starts _ALIGN-aligned
    payload = start + len(header)
    view = memoryview(buffer)
    view[start:payload] = header
    at = 0
    for piece in pieces:
        n, phase = len(piece), at % 4
        dst = payload + at
        if n < LARGE:
            view[dst : dst + n] = _xor_small(piece, keys[phase])
        else:
            whole = n - n % 4
            src = np.frombuffer(piece, np.uint8, count=n)
            # phase 0 whenever _segments could align it; the words are then aligned in both buffers
            np.bitwise_xor(src[:whole].view(np.uint32), words[phase], out=buffer[dst : dst + whole].view(np.uint32))
            if whole < n:
                view[dst + whole : dst + n] = _xor_small(bytes(piece[whole:]), keys[(phase + whole) % 4])
        at += n
    return view[start : payload + size]
