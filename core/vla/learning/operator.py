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


class OperatorQuit(KeyboardInterrupt):
    """The operator typed q."""


class Operator:
    def __init__(self, console, stream=None):
        self.console = console
        self.paused = False
        self._lines: queue.Queue = queue.Queue()
        self._stream = stream if stream is not None else sys.stdin
        threading.Thread(target=self._read, name="operator", daemon=True).start()

    def _read(self) -> None:
        for line in self._stream:
            self._lines.put(line.strip().lower())
        self._lines.put("q")  # no more input: nobody is there to reset the scene

    def _take(self, timeout: float | None):
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def poll(self, run) -> None:
        """Between reports from the arms: a 'p' pauses every arm until the next line."""
        line = self._take(0)
        if line is None:
            return
        if line == "q":
            raise OperatorQuit()
        if line == "p":
            run.abort_running()
            self.paused = True
            self.console.print("paused: every arm holds its last safe position; press Enter to resume", highlight=False)
            while True:
                line = self._take(None)
                if line == "q":
                    raise OperatorQuit()
                break
            self.paused = False
            self.console.print("resumed", highlight=False)

    def reset_scene(self, arm: str, job) -> bool:
        """Ask for the scene of ``arm`` to be reset; False if the operator paused instead."""
        self.console.print(f"[bold]{arm}[/]: reset the scene for episode {job.job}, then press Enter "
                           "(p: pause, q: quit)", highlight=False)
        line = self._take(None)
        if line == "q":
            raise OperatorQuit()
        if line == "p":
            self.paused = True
            self.console.print("paused: press Enter to resume", highlight=False)
            if self._take(None) == "q":
                raise OperatorQuit()
            self.paused = False
            return False
        return True
