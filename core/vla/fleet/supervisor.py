"""The supervisor of `vla fleet run`: one process per arm, restarts, and stopping them all.

Invariants:

- every arm runs in its own process and session (``start_new_session``), so an arm that
  crashes, hangs or loses its camera takes nothing else down, and a Ctrl-C in the terminal
  reaches only the supervisor, which passes it on as one SIGTERM per arm (each arm then
  holds and closes its episode, as `vla run` does). Where the kernel shares CPU time by
  session (``sched_autogroup``), this also gives each arm its own share;
- an arm that exits while the fleet is not stopping is reported with its exit code and the
  cause from its status file or log, and started again while it has restarts left;
- an arm that does not end within ``stop_timeout_s`` of the SIGTERM is killed, and that is
  reported too: nothing is left running when ``run`` returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import attrs

from vla.fleet.arm import ArmSpec
from vla.fleet.status import LOG_FILE, read_status

STOP_SIGNAL_CODES = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}


@attrs.define
class ArmProcess:
    spec: ArmSpec
    restarts_left: int
    proc: subprocess.Popen | None = None
    starts: int = 0
    exits: list[int] = attrs.field(factory=list)
    outcome: str = "starting"  # starting | running | done | stopped | crashed | restarting | killed
    cause: str | None = None
    restart_at: float | None = None

    @property
    def folder(self) -> Path:
        return Path(self.spec.folder)

    def status(self) -> dict:
        return read_status(self.folder) or {"label": self.spec.label, "state": "starting"}


def last_lines(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


class Fleet:
    def __init__(self, specs: list[ArmSpec], out: Path, restarts: int = 0, stop_timeout_s: float = 15.0,
                 restart_delay_s: float = 1.0, env: dict[str, str] | None = None):
        self.out = Path(out)
        self.arms = [ArmProcess(s, restarts) for s in specs]
        self.stop_timeout_s = stop_timeout_s
        self.restart_delay_s = restart_delay_s
        self.env = env
        self.stopping: str | None = None
        self.kill_now = False  # set by a second Ctrl-C; the loop kills every arm without waiting
        self.started_at = time.time()

    # ------------------------------------------------------------- processes

    def _start(self, arm: ArmProcess) -> None:
        arm.folder.mkdir(parents=True, exist_ok=True)
        arm.spec.parent_pid = os.getpid()
        arm.spec.restarts = arm.starts
        spec_path = arm.folder / "spec.json"
        arm.spec.dump(spec_path)
        log = open(arm.folder / LOG_FILE, "ab")
        log.write(f"--- start {arm.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        arm.proc = subprocess.Popen([sys.executable, "-m", "vla.fleet.arm", str(spec_path)], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
        log.close()
        arm.starts += 1
        arm.outcome, arm.restart_at = "running", None

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for arm in self.arms:
            self._start(arm)

    def stop(self, reason: str = "stop", force: bool = False) -> None:
        """Ask every arm to hold and close its episode (SIGTERM); ``run`` collects them.
        ``force``: kill them at the loop's next turn instead of waiting (safe from a signal handler)."""
        self.kill_now = self.kill_now or force
        if self.stopping is None:
            self.stopping = reason
        for arm in self.arms:
            arm.restart_at = None
            if arm.proc is not None and arm.proc.poll() is None:
                try:
                    arm.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def poll(self) -> None:
        """Collect arms that exited; restart those that failed while the fleet runs on."""
        now = time.time()
        for arm in self.arms:
            if arm.proc is not None:
                code = arm.proc.poll()
                if code is None:
                    continue
                arm.proc = None
                arm.exits.append(code)
                status = read_status(arm.folder) or {}
                if code == 0:
                    arm.outcome, arm.cause = "done", None
                elif code in STOP_SIGNAL_CODES:
                    arm.outcome, arm.cause = "stopped", None
                else:
                    arm.outcome = "crashed"
                    arm.cause = status.get("error") or last_lines(arm.folder / LOG_FILE) or f"exit code {code}"
                    if code < 0:
                        arm.cause = f"killed by {signal.Signals(-code).name}" + (f": {arm.cause}" if arm.cause else "")
                    if self.stopping is None and arm.restarts_left > 0:
                        arm.restarts_left -= 1
                        arm.outcome, arm.restart_at = "restarting", now + self.restart_delay_s
            elif arm.restart_at is not None and now >= arm.restart_at and self.stopping is None:
                self._start(arm)

    @property
    def running(self) -> bool:
        return any(a.proc is not None or a.restart_at is not None for a in self.arms)

    def run(self, duration_s: float | None = None, on_update: Callable[[Fleet], None] | None = None,
            every_s: float = 0.5) -> int:
        """Start every arm, supervise until they end (or ``duration_s`` passes, or ``stop``), then
        make sure none is left. Returns the fleet's exit code (see ``exit_code``)."""
        self.start()
        deadline = None if duration_s is None else self.started_at + duration_s
        stop_sent_at = None
        try:
            while True:
                self.poll()
                if on_update is not None:
                    on_update(self)
                if not self.running:
                    break
                now = time.time()
                if deadline is not None and now >= deadline and self.stopping is None:
                    self.stop("time is up")
                if self.stopping is not None:
                    stop_sent_at = stop_sent_at or now
                    if self.kill_now or now - stop_sent_at > self.stop_timeout_s:
                        self._kill_all()
                time.sleep(every_s)
        finally:
            if self.running:  # an exception in the loop (or a second Ctrl-C): no arm is left behind
                self.stop("supervisor failed")
                self._wait_all(self.stop_timeout_s)
        self.write_summary()
        return self.exit_code()

    def _kill_all(self) -> None:
        for arm in self.arms:
            if arm.proc is not None and arm.proc.poll() is None:
                arm.proc.kill()
                arm.proc.wait(5)
                arm.exits.append(arm.proc.returncode)
                arm.proc = None
                arm.outcome = "killed"
                arm.cause = "killed at a second Ctrl-C" if self.kill_now else \
                    f"did not stop within {self.stop_timeout_s:g} s of SIGTERM"

    def _wait_all(self, timeout_s: float) -> None:
        end = time.time() + timeout_s
        while self.running and time.time() < end:
            self.poll()
            time.sleep(0.1)
        self._kill_all()
        for arm in self.arms:
            arm.restart_at = None

    # --------------------------------------------------------------- results

    def exit_code(self) -> int:
        """0 when every arm ended well; 1 when any crashed or was killed (even if restarted
        later, the summary says so); 128+signal when stopped by a signal and all held."""
        if any(a.outcome in ("crashed", "killed") or any(c not in (0, *STOP_SIGNAL_CODES) for c in a.exits)
               for a in self.arms):
            return 1
        if self.stopping in ("SIGINT", "SIGTERM"):
            return 128 + int(getattr(signal, self.stopping))
        return 0

    def summary(self) -> dict:
        arms = []
        for arm in self.arms:
            s = arm.status()
            arms.append({
                "label": arm.spec.label, "outcome": arm.outcome, "cause": arm.cause, "exit_codes": arm.exits,
                "starts": arm.starts, "control_hz": s.get("control_hz"), "target_hz": s.get("target_hz"),
                "underflows": s.get("underflows"), "underflows_per_min": s.get("underflows_per_min"),
                "minutes_since_first_chunk": s.get("minutes_since_first_chunk"), "ticks": s.get("ticks"),
                "holds": s.get("holds"), "clamps": s.get("clamps"), "episodes_done": s.get("episodes_done"),
                "successes": s.get("successes"), "camera_hz": s.get("camera_hz"), "frames": s.get("frames"),
                "log": str(arm.folder / LOG_FILE), "ticks_log": s.get("log"),
            })
        return {"started_at": self.started_at, "ended_at": time.time(), "stopped_by": self.stopping,
                "exit_code": self.exit_code(), "arms": arms}

    def write_summary(self) -> Path:
        path = self.out / "fleet.json"
        path.write_text(json.dumps(self.summary(), indent=2))
        return path
