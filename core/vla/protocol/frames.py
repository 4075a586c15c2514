"""Whole websocket messages from picows frames, for the policy server and its client.

picows hands over frames, not messages. Clients normally send a message as one frame, but the
protocol allows fragments (a first frame without FIN, then continuations), so both ends
assemble them here, refusing a message that grows past the size limit.
"""

from __future__ import annotations

from picows import WSCloseCode, WSFrame, WSMsgType, WSProtocolError


class MessageAssembler:
    """Feed it the data frames of one connection; it returns each message when it is complete."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._partial: bytearray | None = None
        self._text = False

    def feed(self, frame: WSFrame) -> tuple[memoryview, bool] | None:
        """(payload, is_text) when ``frame`` completes a message, else None. The payload of a
        one-frame message is a view of picows's read buffer: use it before the callback returns.
        Raises ``WSProtocolError`` (picows closes with its code) for broken fragmentation."""
        kind = frame.msg_type
        if kind == WSMsgType.CONTINUATION:
            if self._partial is None:
                raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "continuation frame without a message to continue")
            if len(self._partial) + frame.payload_size > self.max_bytes:
                self._partial = None
                raise WSProtocolError(WSCloseCode.MESSAGE_TOO_BIG, f"message over the limit of {self.max_bytes} bytes")
            self._partial += frame.get_payload_as_memoryview()
            if not frame.fin:
                return None
            data, self._partial = self._partial, None
            return memoryview(data), self._text
        if self._partial is not None:
            raise WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "a new message began before the fragmented one ended")
        if not frame.fin:
            self._partial = bytearray(frame.get_payload_as_memoryview())
            self._text = kind == WSMsgType.TEXT
            return None
        return frame.get_payload_as_memoryview(), kind == WSMsgType.TEXT
