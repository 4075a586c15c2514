"""Decoding whose arrays borrow the received bytes instead of copying them.

``codec.decode`` goes through msgpack, which copies every ``bin`` into a new ``bytes``: for an
arm's request that is 1.8 MB written and read once more per request, on the server's critical
path (measured in bench/transport.py). This decoder reads the same msgpack (the subset vla and
openpi messages use, and everything else msgpack accepts) and returns the arrays as read-only
views of the buffer it was given, so they are valid only while that buffer is: the policy
server uses it for a request answered inside the callback that received it, and copies
(``own_arrays``) anything that has to outlive the callback.

It is as strict as ``codec.decode``: the same dtype allow-list and ndarray checks (it shares
them), a bound on nesting, UTF-8 checked, declared lengths checked against what is there, and
trailing bytes refused; every failure is a ``ProtocolError`` with the code ``codec`` gives.
Extension types, which neither protocol uses, are handed to msgpack itself. Being Python, it
reads a few dozen values as fast as msgpack does but a million far slower, so a message of
more than ``MAX_VALUES`` values is decoded by ``codec`` instead (copied, in C time): a hostile
message costs no more than it did. Nothing is ever unpickled or evaluated.
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

import msgpack
import numpy as np

from vla.protocol.codec import (
    DEFAULT_MAX_MESSAGE_BYTES, _decode_ndarray, _object_hook, _text_keys, check_map, check_size, decode_map,
)
from vla.protocol.errors import BAD_MSGPACK, BAD_NDARRAY, ProtocolError

MAX_DEPTH = 32
MAX_VALUES = 4096
# bins this small are copied at once (cheaper than tracking a view of them)
BORROW_FROM = 4096

_U16, _U32, _U64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
_I8, _I16, _I32, _I64 = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_F32, _F64 = struct.Struct(">f"), struct.Struct(">d")
# fixext headers and the size of their payload (after the type byte)
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


class _Truncated(Exception):
    pass


class _TooMany(Exception):
    pass


class BorrowedMessage:
    """A decoded map and weak references to the buffer views its arrays are made from."""

    __slots__ = ("message", "views")

    def __init__(self, message: dict, views: list[weakref.ref]):
        self.message = message
        self.views = views


def _root(array: np.ndarray) -> Any:
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    return base


def borrows(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a received buffer rather than of memory of its own."""
    return isinstance(_root(array), memoryview)


def still_used(views: list[weakref.ref]) -> bool:
    """Whether any array made from these views (or any view of such an array) is still alive.
    numpy keeps a memoryview of the buffer at the root of every such array's bases and holds it
    only through them, so it lives exactly as long as one of them does. (numpy does not hold the
    buffer export, so ``memoryview.release`` cannot tell.)"""
    return any(ref() is not None for ref in views)


def own_arrays(container: dict | list) -> None:
    """Replace, in place, every array in ``container`` (and the maps and lists in it) that is a
    view of a received buffer by a (read-only) copy, so that it outlives the buffer."""
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in list(items):
        if isinstance(value, np.ndarray):
            if borrows(value):
                copy = value.copy()
                copy.flags.writeable = False
                container[key] = copy
        elif isinstance(value, (dict, list)):
            own_arrays(value)


def decode_map_borrowed(data: memoryview, max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES) -> BorrowedMessage:
    """Decode a message that must be a map with text keys; its arrays borrow ``data``."""
    check_size(data, max_bytes)
    data = memoryview(data)
    if data.format != "B" or data.ndim != 1:
        data = data.cast("B")
    data = data.toreadonly()  # the arrays must not write into the buffer they borrow
    views: list[weakref.ref] = []
    try:
        message, end = _Reader(data, views).read(0, 0)
    except ProtocolError:
        raise
    except _TooMany:
        return BorrowedMessage(decode_map(data, max_bytes), [])
    except _Truncated:
        raise ProtocolError(BAD_MSGPACK, "not valid msgpack: the message ends inside a value") from None
    except UnicodeDecodeError:
        raise ProtocolError(BAD_MSGPACK, "not valid msgpack: a string is not valid UTF-8") from None
    except Exception as exc:  # broken input in a way this reader did not name; all mean the same here
        raise ProtocolError(BAD_MSGPACK, f"not valid msgpack: {type(exc).__name__}: {str(exc)[:120]}") from None
    if end != len(data):
        raise ProtocolError(BAD_MSGPACK, f"not valid msgpack: {len(data) - end} bytes after the message")
    return BorrowedMessage(check_map(message), views)


class _Reader:
    __slots__ = ("data", "size", "views", "budget")

    def __init__(self, data: memoryview, views: list[weakref.ref]):
        self.data = data
        self.size = len(data)
        self.views = views
        self.budget = MAX_VALUES

    def _spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise _TooMany

    def _take(self, pos: int, n: int) -> int:
        end = pos + n
        if end > self.size:
            raise _Truncated
        return end

    def read(self, pos: int, depth: int) -> tuple[Any, int]:
        """The value that starts at ``pos`` and where the next one starts."""
        data = self.data
        if pos >= self.size:
            raise _Truncated
        b = data[pos]
        pos += 1
        if b <= 0x7F:
            return b, pos
        if b >= 0xE0:
            return b - 0x100, pos
        if 0xA0 <= b <= 0xBF:
            end = self._take(pos, b & 0x1F)
            return str(data[pos:end], "utf-8"), end
        if 0x80 <= b <= 0x8F:
            return self._map(pos, b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return self._array(pos, b & 0x0F, depth)
        if b == 0xC0:
            return None, pos
        if b == 0xC2:
            return False, pos
        if b == 0xC3:
            return True, pos
        if b in (0xC4, 0xC5, 0xC6):
            n, pos = self._length(pos, b - 0xC4)
            end = self._take(pos, n)
            if n < BORROW_FROM:
                return bytes(data[pos:end]), end
            return data[pos:end], end  # a view; containers other than ndarray maps copy it
        if b in (0xD9, 0xDA, 0xDB):
            n, pos = self._length(pos, b - 0xD9)
            end = self._take(pos, n)
            return str(data[pos:end], "utf-8"), end
        if b in (0xDC, 0xDD):
            n, pos = self._length(pos, b - 0xDC + 1)
            return self._array(pos, n, depth)
        if b in (0xDE, 0xDF):
            n, pos = self._length(pos, b - 0xDE + 1)
            return self._map(pos, n, depth)
        if b == 0xCC:
            end = self._take(pos, 1)
            return data[pos], end
        for code, fmt in ((0xCD, _U16), (0xCE, _U32), (0xCF, _U64), (0xD0, _I8), (0xD1, _I16), (0xD2, _I32),
                          (0xD3, _I64), (0xCA, _F32), (0xCB, _F64)):
            if b == code:
                end = self._take(pos, fmt.size)
                return fmt.unpack_from(data, pos)[0], end
        if b in _FIXEXT or b in (0xC7, 0xC8, 0xC9):
            return self._ext(pos - 1, b)
        raise ProtocolError(BAD_MSGPACK, f"not valid msgpack: byte 0x{b:02x} at offset {pos - 1} starts no value")

    def _length(self, pos: int, width: int) -> tuple[int, int]:
        """A length field of 1, 2 or 4 bytes (``width`` 0, 1, 2)."""
        if width == 0:
            end = self._take(pos, 1)
            return self.data[pos], end
        fmt = _U16 if width == 1 else _U32
        end = self._take(pos, fmt.size)
        return fmt.unpack_from(self.data, pos)[0], end

    def _array(self, pos: int, n: int, depth: int) -> tuple[list, int]:
        if depth >= MAX_DEPTH:
            raise ProtocolError(BAD_MSGPACK, "msgpack nesting is too deep")
        if n > self.size - pos:  # every value takes at least one byte
            raise _Truncated
        self._spend(n)
        out = []
        for _ in range(n):
            value, pos = self.read(pos, depth + 1)
            if isinstance(value, memoryview):
                value = bytes(value)
            out.append(value)
        return out, pos

    def _map(self, pos: int, n: int, depth: int) -> tuple[Any, int]:
        if depth >= MAX_DEPTH:
            raise ProtocolError(BAD_MSGPACK, "msgpack nesting is too deep")
        if 2 * n > self.size - pos:
            raise _Truncated
        self._spend(2 * n)
        out: dict = {}
        borrowed = False
        for _ in range(n):
            key, pos = self.read(pos, depth + 1)
            if not isinstance(key, (str, bytes)):
                raise ProtocolError(BAD_MSGPACK, f"not valid msgpack: {type(key).__name__} is not allowed for map key "
                                    "when strict_map_key=True")
            value, pos = self.read(pos, depth + 1)
            if isinstance(value, memoryview):
                borrowed = True
            out[key] = value
        return self._hook(out, borrowed), pos

    def _hook(self, obj: dict, borrowed: bool) -> Any:
        """What ``codec``'s object hook makes of a map, with large ``data`` borrowed."""
        if b"__ndarray__" in obj or "__ndarray__" in obj:
            fields = _text_keys(obj)
            if fields is None:
                raise ProtocolError(BAD_NDARRAY, "ndarray map has keys that are not text")
            array = _decode_ndarray(fields)
            if isinstance(fields["data"], memoryview):
                self.views.append(weakref.ref(_root(array)))
            return array
        if borrowed:
            for key, value in obj.items():
                if isinstance(value, memoryview):
                    obj[key] = bytes(value)
        return _object_hook(obj)  # numpy scalars, or the map itself

    def _ext(self, start: int, b: int) -> tuple[Any, int]:
        if b in _FIXEXT:
            end = self._take(start + 2, _FIXEXT[b])
        else:
            n, pos = self._length(start + 1, b - 0xC7)
            end = self._take(pos + 1, n)
        return msgpack.unpackb(self.data[start:end]), end
