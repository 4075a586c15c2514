"""The terminal view of `vla fleet run`: one row per arm, redrawn while the fleet runs.

On a terminal it is a rich ``Live`` table; into a log or pipe it prints the table every
``PRINT_EVERY_S`` instead. It also writes the supervisor's view (``supervisor.json``) that the
dashboard merges into each arm's status.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from vla.fleet.dashboard import SUPERVISOR_FILE
from vla.atomicfile import write_atomic

PRINT_EVERY_S = 15.0


def _num(value, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


class LiveTable:
    def __init__(self, console, out: Path):
        self.console = console
        self.out = Path(out)
        self.live = None
        self._last_print = time.time()

    def __enter__(self):
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=2, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    def render(self, fleet):
        from rich.table import Table

        table = Table(title=f"fleet: {len(fleet.arms)} arms" + (f" (stopping: {fleet.stopping})" if fleet.stopping else ""))
        for col in ("arm", "state", "task", "episode", "Hz", "queue", "rtt ms", "underflows/min", "clamps", "holds",
                    "success", "starts"):
            table.add_column(col, justify="left" if col in ("arm", "state", "task") else "right", no_wrap=True)
        for arm in fleet.arms:
            s = arm.status()
            state = arm.outcome if arm.outcome != "running" else s.get("state", "?")
            if s.get("alarm"):
                state += " [red]G1![/]"
            table.add_row(
                arm.spec.label, state, str(s.get("task") or "-"),
                "-" if s.get("episode") is None else str(s["episode"] + 1),
                _num(s.get("control_hz")), str(s.get("queue", 0)), _num(s.get("rtt_ms"), "{:.0f}"),
                _num(s.get("underflows_per_min"), "{:.2f}"), str(s.get("clamps", 0)), str(s.get("holds", 0)),
                f"{s.get('successes', 0)}/{s.get('episodes_done', 0)}", str(arm.starts),
            )
        return table

    def update(self, fleet) -> None:
        view = {"updated_at": time.time(), "stopping": fleet.stopping,
                "arms": {a.spec.label: {"outcome": a.outcome, "cause": a.cause, "starts": a.starts,
                                        "exit_codes": a.exits} for a in fleet.arms}}
        write_atomic(self.out / SUPERVISOR_FILE, json.dumps(view).encode(), durable=False)
        if self.live is not None:
            self.live.update(self.render(fleet))
        elif time.time() - self._last_print >= PRINT_EVERY_S:
            self._last_print = time.time()
            self.console.print(self.render(fleet))
