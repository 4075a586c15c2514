"""`vla sim ...`: commands of the simulated tabletop."""

from __future__ import annotations

import click

from vla_sim.config import TASK_IDS


@click.group("sim")
def sim() -> None:
    """The simulated SO-101 tabletop (MuJoCo)."""


@sim.command("clips")
@click.option("--task", "tasks", multiple=True, required=True, type=click.Choice(TASK_IDS + ("all",)),
              help="Task id (repeat for several, or 'all').")
@click.option("-n", "--num", "n", default=50, show_default=True, type=click.IntRange(min=2), help="Clips per task.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for labels.jsonl and the frames.")
@click.option("--frames", "frames_per_clip", default=4, show_default=True, type=click.IntRange(min=1),
              help="Front-camera frames per clip, the last at the episode's end.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the episodes (same seed, same clips).")
@click.option("--size", default=224, show_default=True, type=click.IntRange(min=32, max=1024), help="Frame height and width.")
@click.option("--append", is_flag=True, help="Add to an existing labels.jsonl instead of replacing it.")
def clips(tasks, n, out, frames_per_clip, seed, size, append) -> None:
    """Write labelled clips (half successes) with ground truth from the physics.

    Successes come from the scripted expert; failures from the arm held still, random motion,
    the expert stopped part-way and the expert with noisy actions.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vla_sim.clips import generate_clips

    task_ids = TASK_IDS if "all" in tasks else tuple(dict.fromkeys(tasks))
    console = Console(stderr=True)
    summaries = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for i, task_id in enumerate(task_ids):
            bar = progress.add_task(task_id, total=n, counts="")
            counts = {"ok": 0, "fail": 0, "dropped": 0}

            def on_clip(episode, kept, bar=bar, counts=counts):
                if kept:
                    counts["ok" if episode.success else "fail"] += 1
                else:
                    counts["dropped"] += 1
                progress.update(bar, completed=counts["ok"] + counts["fail"],
                                counts=f"success {counts['ok']}  failure {counts['fail']}  dropped {counts['dropped']}")

            try:
                summaries.append(
                    generate_clips(out, task_id, n, frames_per_clip=frames_per_clip, seed=seed, size=size,
                                   append=append or i > 0, on_clip=on_clip)
                )
            except (ValueError, RuntimeError) as exc:
                raise click.ClickException(str(exc)) from None
    for s in summaries:
        click.echo(f"{s['task']}: {s['clips']} clips ({s['successes']} successes, {s['failures']} failures) "
                   f"from {s['episodes']} episodes")
    click.echo(f"labels: {out}/labels.jsonl")
