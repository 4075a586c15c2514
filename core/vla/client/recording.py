"""Recording off the control thread.

Writing a LeRobot frame (PNG files, parquet rows) takes tens of milliseconds and opening the
dataset far longer; done inline it would make ticks miss their deadlines. ``BackgroundRecorder``
wraps a ``vla.recording.EpisodeRecorder``: frames are queued and written by one thread in
order; ``end_episode`` waits for the queue to drain, then saves the episode.
"""

from __future__ import annotations

import queue
import threading
from typing import Any


class BackgroundRecorder:
    def __init__(self, recorder, chatter_log=None):
        self.recorder = recorder
        self.chatter_log = chatter_log  # where the encoder's own output goes (see vla.recording.chatter)
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._frames = 0
        self._thread = threading.Thread(target=self._write, name="vla-recorder", daemon=True)
        self._thread.start()

    @property
    def path(self):
        return self.recorder.path

    @property
    def frames_in_episode(self) -> int:
        return self._frames

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    self.recorder.add_frame(*item)
            except BaseException as exc:  # reported by the next end_episode
                self._error = exc
            finally:
                self._queue.task_done()

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def start_episode(self, task: str | None = None) -> None:
        self._check()
        self.recorder.start_episode(task)
        self._frames = 0

    def add_frame(self, observation: dict[str, Any], action) -> None:
        self._queue.put((observation, action))
        self._frames += 1

    def end_episode(self) -> int:
        from vla.recording.chatter import stderr_to

        self._queue.join()
        self._frames = 0
        if self._error is not None:
            self.recorder.discard_episode()
            self._check()
        with stderr_to(self.chatter_log):
            return self.recorder.end_episode()

    def discard_episode(self) -> None:
        self._queue.join()
        self._frames = 0
        self._error = None
        self.recorder.discard_episode()

    def close(self) -> None:
        self._queue.join()
        self._queue.put(None)
        self._thread.join(10)
        from vla.recording.chatter import stderr_to

        with stderr_to(self.chatter_log):
            self.recorder.close()
