"""`vla gates` and `vla board`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, exists=True))
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False), help="Also write the verdicts and figures here.")
@click.pass_context
def gates(ctx, folder, json_path):
    """Judge the lab plan's gates G0-G3 and the latency KPI from what vla recorded.

    Reads the lab config (arms, safety files, the robots' calibration) for G0, and every tick
    log, `vla eval` results.json and `vla rewarder calibrate` report under FOLDER (default:
    the lab folder) for the rest. Prints every gate with pass or fail and its evidence, with
    95% Wilson intervals where a rate is judged. Thresholds: `gates:` in vla.yaml. Exits 0
    when every gate passes, 1 otherwise.
    """
    import attrs
    from rich.markup import escape
    from rich.table import Table

    from vla.cli.common import lab_config
    from vla.client.cli import wide_console
    from vla.lab.gates import judge

    loaded = lab_config(ctx)
    try:
        results, found = judge(loaded, Path(folder) if folder else None)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    console = wide_console()
    table = Table(title=f"gates of {loaded.config.lab} ({folder or loaded.base_dir})", show_lines=True)
    table.add_column("gate", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("what it asks")
    table.add_column("evidence")
    for g in results:
        verdict = "[green]pass[/]" if g.passed else "[red]fail[/]"
        table.add_row(g.name, verdict, escape(g.title),
                      "\n".join([f"[bold]{escape(g.summary)}[/]", *map(escape, g.evidence)]))
    console.print(table)
    console.print(f"read {len(found.runs)} tick logs, {len(found.evals)} eval results, "
                  f"{len(found.calibrations)} rewarder calibrations", highlight=False)
    for path, why in found.skipped:
        console.print(f"[yellow]skipped[/] {path}: {why}", highlight=False, soft_wrap=True)
    if json_path:
        Path(json_path).write_text(json.dumps([attrs.asdict(g) | {"verdict": g.verdict} for g in results], indent=2,
                                              default=str))
    passed = sum(g.passed for g in results)
    console.print(f"{passed} of {len(results)} gates pass", highlight=False)
    sys.exit(0 if passed == len(results) else 1)


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for index.html, board.json and the media.")
@click.option("--title", default="evaluation board", show_default=True)
def board(results, out_dir, title):
    """Build the evaluation board: a static HTML page from `vla eval` results over time.

    RESULTS are results.json files or folders holding them (searched recursively). Per task
    and checkpoint: success@K with 95% Wilson intervals, time-to-success, the gentle-failure
    rate (safety stops, objects knocked off the table, holds), an A/B table of the newest
    checkpoint against the previous one, and video thumbnails.
    """
    from vla.lab.board import build

    try:
        data = build([Path(p) for p in results], Path(out_dir), title)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    for s in data["skipped"]:
        click.echo(f"skipped {s['path']}: {s['reason']}", err=True)
    click.echo(f"{len(data['evaluations'])} evaluations, {len(data['tasks'])} tasks, {len(data['ab'])} A/B rows")
    click.echo(str(Path(out_dir) / "index.html"))
