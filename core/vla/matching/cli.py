"""`vla doctor --dataset DIR ...`: compare a deployment with the dataset and checkpoint it was trained on.

Exit codes: 0 when no check fails (warnings allowed), 1 when one does, 2 when an input cannot
be read (the message names it).
"""

from __future__ import annotations

import json
import sys

import click


class MatchInputError(click.ClickException):
    exit_code = 2


def doctor_dataset(ctx: click.Context, *, dataset: str, checkpoint: str | None, policy_url: str | None,
                   arm_id: str | None, robot_name: str | None, task: str | None, episodes: str | None,
                   as_json: bool, report_dir: str | None) -> None:
    from rich.console import Console

    from vla.cli.common import lab_config
    from vla.matching.console import print_report
    from vla.matching.run import MatchSetupError, gather, run_checks

    if checkpoint and policy_url:
        raise click.UsageError("give --checkpoint or --policy-url, not both")
    loaded = lab_config(ctx)
    console = Console(stderr=True) if as_json else Console(width=None if sys.stdout.isatty() else 160)
    try:
        with console.status("reading the dataset, the checkpoint and the arm"):
            inputs = gather(loaded, dataset, checkpoint=checkpoint, policy_url=policy_url, arm_id=arm_id,
                            robot_name=robot_name, task=task, episodes=episodes)
        with console.status("comparing"):
            report = run_checks(inputs)
    except MatchSetupError as exc:
        raise MatchInputError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(console, report)
    if report_dir:
        from vla.matching.html import write_report

        page = write_report(report, report_dir)
        console.print(f"report: {page}")
    sys.exit(report.exit_code)
