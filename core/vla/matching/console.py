"""The report in a terminal: one line per check, its verdict and the numbers that decided it."""

from __future__ import annotations

from vla.matching.results import FAIL, PASS, SKIP, WARN, MatchReport

MARKS = {PASS: "[green]pass[/green]", WARN: "[yellow]warn[/yellow]", FAIL: "[red]FAIL[/red]", SKIP: "[dim]skip[/dim]"}


def print_report(console, report: MatchReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    ds = report.dataset
    console.print(f"[bold]training[/] {ds['path']}: {ds['episodes']} episodes, {ds['frames']} frames at {ds['fps']:g} fps")
    if report.checkpoint:
        console.print(f"[bold]checkpoint[/] {report.checkpoint['policy']} {report.checkpoint['path']}")
    dep = report.deployment
    parts = [f"robot {dep['robot']}" if dep.get("robot") else None,
             f"task {dep['task']!r}" if dep.get("task") else None,
             f"recording {dep['recording']}" if dep.get("recording") else None]
    console.print("[bold]deployment[/] " + ", ".join(p for p in parts if p) if any(parts) else "[bold]deployment[/] (none given)")
    table = Table(show_header=True, header_style="bold", expand=False, show_lines=False)
    table.add_column("", justify="right")
    table.add_column("check")
    table.add_column("what it found", overflow="fold")
    for check in report.checks:
        table.add_row(MARKS[check.status], check.name, escape(check.summary))
    console.print(table)
    counts = {s: sum(c.status == s for c in report.checks) for s in (PASS, WARN, FAIL, SKIP)}
    verdict = {FAIL: "[red]the deployment does not match the training[/]", WARN: "[yellow]matches, with warnings[/]",
               PASS: "[green]the deployment matches the training[/]", SKIP: "nothing could be checked"}[report.status]
    if report.status in (PASS, WARN) and counts[SKIP]:
        verdict += " in what could be checked"
    console.print(f"{verdict}: {counts[PASS]} pass, {counts[WARN]} warn, {counts[FAIL]} fail, {counts[SKIP]} skipped")
