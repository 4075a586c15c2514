"""What `vla run` and `vla eval` print when a session ends: the episode table and what went wrong."""

from __future__ import annotations

from vla.client.runner import SessionSummary

COLUMNS = ("episode", "task", "seed", "success", "seconds", "underflows", "clamps", "rejected", "errors", "disconnects")


def _error_cell(result) -> str:
    n = result.counts.get("errors", 0)
    if not n:
        return "0"
    code = max(result.errors_by_code, key=result.errors_by_code.get) if result.errors_by_code else "?"
    return f"{n} ({code})"


def episode_table(summary: SessionSummary):
    from rich.table import Table

    table = Table(title=f"episodes on {summary.label or summary.robot}")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=col == "task")
    for r in summary.episodes:
        c = r.counts
        success = {True: "yes", False: "no", None: "-"}[r.success] + (" (stopped)" if r.interrupted else "")
        table.add_row(str(r.index), r.task, "-" if r.seed is None else str(r.seed), success, f"{r.duration_s:.1f}",
                      str(c.get("underflows", 0)), str(c.get("clamps", 0)), str(c.get("rejected", 0)),
                      _error_cell(r), str(c.get("disconnects", 0)))
    return table


def print_summary(console, summary: SessionSummary) -> None:
    """The table, failed requests (count and the most common code with its message), the files written."""
    if summary.episodes:
        console.print(episode_table(summary))
    errors = sum(summary.errors_by_code.values())
    if errors and summary.last_error:
        code, message = summary.last_error
        requests = summary.totals.get("requests", 0)
        console.print(f"[yellow]{errors} of {requests} requests failed[/]; most common: {code} "
                      f"({summary.errors_by_code[code]}x): {message}", soft_wrap=True, highlight=False)
    for path in summary.dataset:
        console.print(f"dataset: {path}", soft_wrap=True, highlight=False)
    if summary.encoder_log is not None:
        console.print(f"video encoder output: {summary.encoder_log}", soft_wrap=True, highlight=False)
    if summary.log_path is not None and summary.log_path.exists():
        console.print(f"tick log: {summary.log_path}   plot it with: vla report {summary.log_path}",
                      soft_wrap=True, highlight=False)
