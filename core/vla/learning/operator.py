"""The operator of real arms during `vla learn`: resets the scene, pauses and resumes.

Before each episode on a real arm the operator is asked to reset that arm's scene and press
Enter. While episodes run, typing ``p`` (then Enter) pauses: every arm ends its episode at once
and holds its last safe position (the episode is not scored and runs again later); Enter
resumes. ``q`` stops the run (its last checkpoint stays; continue with --resume). Input is read
line by line from stdin in a thread, so a script can drive it as well as a person.
"""

from __future__ import annotations

import queue
import sys
import threading


class OperatorQuit(Exception):
    """The operator typed q (or the input ended): the run stops; its last checkpoint stays."""


class Operator:
    def __init__(self, console, stream=None):
        self.console = console
        self.paused = False
        self._lines: queue.Queue = queue.Queue()
        self._next: str | None = None  # a line read but not yet used (an answer to the next prompt)
        self._stream = stream if stream is not None else sys.stdin
        threading.Thread(target=self._read, name="operator", daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.put(line.strip().lower())
        self._lines.put("q")  # no more input: nobody is there to reset the scene

    def _peek(self, timeout: float | None) -> str | None:
        if self._next is None:
            try:
                self._next = self._lines.get(timeout=timeout) if timeout != 0 else self._lines.get_nowait()
            except queue.Empty:
                return None
        return self._next

    def _take(self) -> str:
        line = self._peek(None)
        self._next = None
        return line

    def _pause(self) -> None:
        self.paused = True
        self.console.print("paused: every arm holds its last safe position; press Enter to resume", highlight=False)
        if self._take() == "q":
            raise OperatorQuit()
        self.paused = False
        self.console.print("resumed", highlight=False)

    def poll(self, run) -> None:
        """Between reports from the arms: 'p' pauses every arm until the next line, 'q' quits.
        Any other line is left for the next prompt."""
        line = self._peek(0)
        if line == "q":
            raise OperatorQuit()
        if line == "p":
            self._take()
            run.abort_running()
            self._pause()

    def reset_scene(self, arm: str, job) -> bool:
        """Ask for the scene of ``arm`` to be reset; False if the operator paused instead."""
        self.console.print(f"[bold]{arm}[/]: reset the scene for episode {job.job}, then press Enter "
                           "(p: pause, q: quit)", highlight=False)
        line = self._take()
        if line == "q":
            raise OperatorQuit()
        if line == "p":
            self._pause()
            return False
        return True
