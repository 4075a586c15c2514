"""`vla learn`'s live view (rich): episodes against the budget, the last round's rewarder
success, the best fitness, the last selection check and the time left."""

from __future__ import annotations


class LearnProgress:
    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
            TextColumn("{task.fields[status]}"), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.bar = None
        self.heldout_bar = None
        self._round = "round -"
        self._select = "selection -"

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def _status(self) -> str:
        return f"{self._round}  {self._select}"

    def __call__(self, kind: str, info: dict) -> None:
        p = self.progress
        if kind == "status":
            self.console.print(info["text"], highlight=False)
        elif kind == "start":
            names = ", ".join(s.name for s in info["space"])
            self.console.print(f"learning {info['goal']!r} on {len(info['arms'])} arm(s) over {len(info['space'])} "
                               f"parameters ({names})", highlight=False)
            self.bar = p.add_task("learn", total=info["budget"], completed=info["episodes"], status=self._status())
        elif kind == "episode" and self.bar is not None:
            p.update(self.bar, completed=info["episodes"])
        elif kind == "round" and self.bar is not None:
            self._round = (f"round {info['generation']}: rewarder success {info['rewarder_success']:.0%}, "
                           f"best fitness {info['best_fitness']:.3f}")
            p.update(self.bar, completed=info["episodes"], status=self._status())
        elif kind == "select" and self.bar is not None:
            self._select = f"selection {info['rewarder_success']:.0%} ({info['candidate']})"
            p.update(self.bar, completed=info["episodes"], status=self._status())
        elif kind == "heldout":
            self.heldout_bar = p.add_task("held-out test", total=info["episodes"], status=info["candidate"])
        elif kind == "heldout_episode" and self.heldout_bar is not None:
            p.update(self.heldout_bar, completed=info["done"])
