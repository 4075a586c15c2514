"""`vla train --policy NAME --dataset DIR [--dataset DIR ...]`: train a policy with a trainer plugin.

Several ``--dataset`` folders are trained on together (their union): they must have the same
features at the same fps, checked here from their ``meta/info.json`` before anything heavy is
imported, so that a mismatch is one line naming the dataset and the feature.

The trainer is found in the registry by name (`vla plugins list --kind trainers`); its settings
come from `plugins.<name>` in vla.yaml, and `-o key=value` adds policy options for one run.
Before training starts the command prints the epochs the run amounts to
(steps x batch / frames), because small datasets overfit by epochs, not steps.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import click

from vla.cli.common import ConfigUsageError, lab_config
from vla.config import ConfigError
from vla.training.dataset_info import DatasetError, check_same_features, read_dataset_summary
from vla.training.trainer import TrainingError, TrainRequest, epochs


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with the value read as YAML (numbers, null, true, lists); a bare word stays text."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}", param_hint="-o/--option")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads "3e-4" (no dot) as text; a learning rate written that way means a number
        try:
            value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity") else value
        except ValueError:
            pass
    return key, value


def default_output(dataset: Path, policy: str, more: int = 0) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S")
    return Path("outputs") / "train" / (f"{stamp}_{policy}_{dataset.name}" + (f"_and_{more}_more" if more else ""))


@click.command("train")
@click.option("--policy", "policy", required=True, help="Trainer name, e.g. act, diffusion, smolvla (see `vla plugins list --kind trainers`).")
@click.option("--dataset", "datasets", required=True, multiple=True, type=click.Path(path_type=Path),
              help="A local LeRobot dataset folder; repeat to train on several with the same features.")
@click.option("--steps", type=click.IntRange(min=1), default=20000, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Output folder (default: outputs/train/TIME_POLICY_DATASET).")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="A policy option, e.g. -o chunk_size=40 (repeatable).")
@click.option("--device", default=None, help="cpu, cuda, cuda:1, mps (default: the trainer config's, usually auto).")
@click.option("--seed", type=int, default=1000, show_default=True)
@click.pass_context
def train(ctx, policy, datasets, steps, batch_size, output, options, device, seed):
    """Train a policy on local LeRobot datasets and save a checkpoint `vla serve` can load."""
    from rich.console import Console

    from vla.plugins import PluginError, UnknownComponent, get_spec

    console = Console(stderr=False)
    try:
        spec = get_spec("trainers", policy)
    except (UnknownComponent, PluginError) as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from None
    if spec.mode == "online":
        raise click.BadParameter(f"{policy!r} is an online trainer (candidates out, scores in): run it with "
                                 f"`vla learn --trainer {policy}`, not `vla train`", param_hint="--policy")
    loaded = lab_config(ctx)
    try:
        trainer_config = loaded.plugin_config(spec)
    except ConfigError as exc:
        raise ConfigUsageError(f"bad configuration: {exc}") from None
    try:
        summaries = [read_dataset_summary(d) for d in datasets]
        check_same_features(summaries)
    except DatasetError as exc:
        raise click.BadParameter(str(exc), param_hint="--dataset") from None
    parsed = dict(parse_option(o) for o in options)
    output = output or default_output(summaries[0].root, policy, len(summaries) - 1)
    if (output / "pretrained_model").exists():
        raise click.BadParameter(f"{output} already holds a checkpoint; choose another --output", param_hint="--output")

    frames = sum(s.frames for s in summaries)
    n_epochs = epochs(steps, batch_size, frames)
    for summary in summaries:
        console.print(
            f"dataset {summary.root}: {summary.episodes} episodes, {summary.frames} frames at {summary.fps:g} fps"
        )
    robots = sorted({str(s.robot_type) for s in summaries})
    if len(summaries) > 1:
        console.print(f"together: {sum(s.episodes for s in summaries)} episodes, {frames} frames from {len(summaries)} datasets")
        if len(robots) > 1:
            console.print(f"[yellow]note:[/] the datasets come from different robots ({', '.join(robots)})", highlight=False)
    console.print(
        f"training {policy} for {steps} steps x batch {batch_size} = "
        f"[bold]{n_epochs:.2f} epochs[/bold] (steps x batch / frames = {steps} x {batch_size} / {frames})"
    )

    trainer = spec.build(trainer_config)
    request = TrainRequest(
        dataset=summaries[0].root, extra_datasets=[s.root for s in summaries[1:]], output=output, steps=steps,
        batch_size=batch_size, seed=seed, device=device, options=parsed,
    )
    cpu_started = time.process_time()
    result = _run_with_progress(console, trainer, request, policy)
    # the trainer's own figure when it has one (it may train in another process), else this process's
    cpu_s = result.cpu_seconds if result.cpu_seconds is not None else time.process_time() - cpu_started
    loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
    console.print(
        f"trained {result.steps} steps ({epochs(result.steps, batch_size, frames):.2f} epochs) in {result.seconds:.1f} s, "
        f"{cpu_s / 60:.1f} CPU-minutes{loss}"
    )
    console.print(f"checkpoint: {result.checkpoint}")
    console.print(
        "serve it: set `plugins: {lerobot: {path: " + str(result.checkpoint) + "}}` in vla.yaml "
        "(or VLA_LEROBOT_PATH) and run `vla serve --policy lerobot`"
    )


def _run_with_progress(console, trainer, request: TrainRequest, name: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"train {name}", total=request.steps, loss="-")

        every = max(1, request.steps // 20)
        started = time.monotonic()

        def report(step: int, total: int, metrics: dict) -> None:
            if "note" in metrics:
                progress.console.print(f"[yellow]note:[/] {metrics['note']}", highlight=False, soft_wrap=True)
                return
            loss = metrics.get("loss")
            text = f"{loss:.4f}" if loss is not None else "-"
            progress.update(task, completed=step, total=total, loss=text)
            if not console.is_terminal and (step % every == 0 or step == total):
                # a log file gets a line now and then instead of a bar it cannot redraw
                progress.console.print(f"step {step}/{total}  loss {text}  {time.monotonic() - started:.0f} s")

        try:
            return trainer.train(request, report)
        except TrainingError as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, ConnectionError) as exc:  # a download a trainer did not expect: one line, not a traceback
            raise click.ClickException(f"training {name} failed: {type(exc).__name__}: {exc}") from None
