"""`vla serve-rewarder` and `vla rewarder calibrate|ab|score`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _config_path(ctx: click.Context) -> str | None:
    root = ctx.find_root()
    return (root.obj or {}).get("config_path") if root.obj else None


def _overrides(pairs) -> dict:
    from vla.rewarding.loading import parse_overrides

    try:
        return parse_overrides(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None


DEFAULT_PORT = 18080


class ServeError(click.ClickException):
    """A problem with what was asked (unknown rewarder, bad settings, busy port): one line, exit 2."""

    exit_code = 2


def _rewarder_settings(ctx: click.Context, name: str, overrides: dict):
    from vla.rewarding.loading import rewarder_config

    return rewarder_config(name, _config_path(ctx), overrides)


def _check_name(ctx: click.Context, name: str, overrides: dict):
    """Resolve the rewarder's spec and config now, so a typo fails before anything starts."""
    from vla.config import ConfigError
    from vla.plugins import PluginError, UnknownComponent
    from vla.rewarding.loading import rewarder_config

    try:
        return rewarder_config(name, _config_path(ctx), overrides)
    except (UnknownComponent, PluginError, ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override one rewarder setting (repeatable), e.g. --set threshold=0.6.",
)


@click.command("serve-rewarder")
@click.option("--rewarder", "name", required=True, help="Rewarder plugin name (see `vla plugins list`).")
@click.option("--host", default=None, envvar="VLA_REWARDER_HOST",
              help="Address to bind, 0.0.0.0 inside a container [default: rewarder.host from vla.yaml, else 127.0.0.1].")
@click.option("--port", default=None, type=click.IntRange(0, 65535),
              help=f"Port, 0 for any free one [default: rewarder.port from vla.yaml, else {DEFAULT_PORT}].")
@click.option("--api-key", default=None, help="Require this key [default: rewarder.api_key from vla.yaml or $VLA_API_KEY].")
@click.option("--ema", "ema_alpha", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Smooth scores per episode_id with this EMA weight of the newest score (off by default).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, help="Override the rewarder's success threshold.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS private key (PEM).")
@click.option("--max-body-mb", type=click.FloatRange(0, min_open=True), default=32.0, show_default=True)
@click.option("--max-pixels", type=click.IntRange(64), default=4096 * 4096, show_default=True, help="Per image.")
@click.option("--max-request-pixels", type=click.IntRange(64), default=16 * 1024 * 1024, show_default=True,
              help="All frames of one request together, read from the image headers before decoding.")
@click.option("--max-frames", type=click.IntRange(1), default=64, show_default=True, help="Per request.")
@click.option("--max-batch", type=click.IntRange(1), default=64, show_default=True, help="Items per /score/batch.")
@click.option("--max-decodes", type=click.IntRange(1), default=2, show_default=True,
              help="Requests decoding and scoring at once; the others wait without decoded pixels.")
@click.option("--max-connections", type=click.IntRange(1), default=256, show_default=True,
              help="Open connections beyond this are answered 503.")
@set_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None, help="Log lines as text or JSON [default: $VLA_LOG_FORMAT, else text].")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@click.pass_context
def serve_rewarder(ctx, name, host, port, api_key, ema_alpha, threshold, tls_cert, tls_key, max_body_mb, max_pixels,
                   max_request_pixels, max_frames, max_batch, max_decodes, max_connections, overrides, log_format, verbose):
    """Serve a rewarder over HTTP: POST /score, POST /score/batch, GET /healthz, GET /metrics.

    Host, port and API key come from the flags, else from the lab config (`rewarder:` in
    vla.yaml, `.env`, $VLA_API_KEY); the start-up line says where each came from. A key set
    there is enforced: requests without it get 401.
    """
    import asyncio

    import attrs

    from vla.config import ConfigError, load_config
    from vla.plugins import PluginError, UnknownComponent
    from vla.rewarding.requests import Limits
    from vla.rewarding.service import RewarderService
    from vla.service.http import serve
    from vla.service.limits import ServerLimits
    from vla.service.logs import setup_logging
    from vla.service.net import PortInUse, bind_listener, server_ssl_context
    from vla.service.settings import server_endpoint

    setup_logging("debug" if verbose else "info", log_format)
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        loaded = load_config(_config_path(ctx))
    except ConfigError as exc:
        raise ServeError(f"bad configuration: {exc}") from None
    try:
        spec, config = _rewarder_settings(ctx, name, _overrides(overrides))
    except (UnknownComponent, PluginError) as exc:
        raise ServeError(f"--rewarder {name}: {exc.args[0] if exc.args else exc}") from None
    except (ConfigError, ValueError) as exc:
        raise ServeError(f"bad settings for rewarder {name!r}: {exc}") from None
    endpoint = server_endpoint(ctx, loaded, "rewarder", default_port=DEFAULT_PORT)
    try:
        ssl_context = server_ssl_context(tls_cert, tls_key) if tls_cert else None
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot load the TLS certificate and key: {exc}") from None
    service = RewarderService(
        name,
        lambda: spec.build(config),
        api_key=endpoint.api_key.value,
        ema_alpha=ema_alpha,
        threshold=threshold,
        limits=Limits(max_pixels=max_pixels, max_request_pixels=max_request_pixels, max_frames=max_frames,
                      max_batch=max_batch, max_decodes=max_decodes),
        max_body_bytes=int(max_body_mb * 1024 * 1024),
        server_limits=attrs.evolve(ServerLimits(), max_connections=max_connections),
    )
    try:
        sock = bind_listener(endpoint.host.value, endpoint.port.value, service.server_limits.backlog)
    except PortInUse as exc:
        raise ServeError(f"{exc} (port from {endpoint.port.source})") from None
    except OSError as exc:
        raise ServeError(str(exc)) from None

    async def main() -> None:
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM: docker stop
            loop.add_signal_handler(sig, stop.set)
        served = await serve(service.make_app(), endpoint.host.value, endpoint.port.value, ssl=ssl_context, sock=sock)
        service.load_in_background()
        click.echo(
            f"vla serve-rewarder: rewarder {name!r} on {served.url} (POST /score, /score/batch; GET /healthz, /metrics; "
            f"{endpoint.describe()})",
            err=True,
        )
        await stop.wait()
        click.echo("vla serve-rewarder: stopping", err=True)
        await served.close()

    asyncio.run(main())


@click.group("rewarder")
def rewarder():
    """Calibrate rewarders against labelled clips and compare them."""


def _make_scorer(ctx, name: str, url: str | None, api_key: str | None, overrides: dict):
    """A rewarder in this process, or a client of a running service when ``url`` is given."""
    if url:
        from vla.rewarding.client import RewarderClient

        client = RewarderClient(url, api_key=api_key)
        try:
            health = client.wait_ready(timeout=10)
        except (ConnectionError, TimeoutError, Exception) as exc:
            raise click.ClickException(f"rewarder service at {url}: {exc}") from None
        if name and health.get("rewarder") not in (None, name):
            click.echo(f"note: {url} serves rewarder {health.get('rewarder')!r}, not {name!r}", err=True)
        return client, health.get("rewarder") or name, url
    spec, config = _check_name(ctx, name, overrides)
    try:
        scorer = spec.build(config)
        warmup = getattr(scorer, "warmup", None)
        if callable(warmup):  # a wrong model name or an absent backend fails here, once
            warmup()
        return scorer, name, "in-process"
    except Exception as exc:
        raise click.ClickException(f"cannot start rewarder {name!r}: {type(exc).__name__}: {exc}") from None


def _load(labels: str, tasks: tuple[str, ...]):
    from vla.rewarding.labels import LabelsError, load_clips

    try:
        return load_clips(labels, tasks or None)
    except LabelsError as exc:
        raise click.ClickException(str(exc)) from None


def _score_with_progress(scorer, clips, title: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vla.rewarding.calibration import score_clips

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=_console()) as progress:
        bar = progress.add_task(title, total=len(clips))
        return score_clips(scorer, clips, progress=lambda _clip: progress.advance(bar))


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _report_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _clip_rows(results):
    return [{"id": r.id, "task": r.task, "label": r.label, "score": r.score, "error": r.error,
             "seconds": round(r.seconds, 4)} for r in results]


labels_option = click.option("--labels", required=True, type=click.Path(exists=True),
                             help="Labelled-clips folder (with labels.jsonl), e.g. from `vla sim clips`.")
task_option = click.option("--task", "tasks", multiple=True, help="Only clips of this task id (repeatable).")
criterion_option = click.option("--criterion", type=click.Choice(["agreement", "youden"]), default="agreement",
                                show_default=True, help="How to choose the threshold.")
out_option = click.option("--out", type=click.Path(file_okay=False), default="rewarder-reports", show_default=True,
                          help="Folder for the report JSON and PNG.")


@rewarder.command("calibrate")
@click.option("--rewarder", "name", required=True, help="Rewarder plugin name.")
@labels_option
@click.option("--url", default=None, help="Score through a running service instead of in-process.")
@click.option("--api-key", envvar="VLA_API_KEY", default=None)
@task_option
@criterion_option
@out_option
@set_option
@click.pass_context
def calibrate(ctx, name, labels, url, api_key, tasks, criterion, out, overrides):
    """Agreement, precision, recall and ROC-AUC against labels; choose a threshold; write a report."""
    from rich.table import Table

    from vla.rewarding.calibration import summarise, test_model_note
    from vla.rewarding.report import plot_calibration

    clips = _load(labels, tasks)
    scorer, shown, source = _make_scorer(ctx, name, url, api_key, _overrides(overrides))
    threshold = float(scorer.threshold)
    results = _score_with_progress(scorer, clips, f"scoring {len(clips)} clips with {shown}")
    summary = summarise(results, threshold, criterion)
    note = test_model_note(results)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / f"calibration_{shown}.json", out_dir / f"calibration_{shown}.png"
    header = {"note": note, "test_model": True} if note else {}
    _report_json(json_path, {**header, "rewarder": shown, "source": source, "labels": str(Path(labels).resolve()),
                             **summary, "clips": _clip_rows(results)})
    if summary["n_scored"]:
        plot_calibration(results, summary, f"{shown} (TEST MODEL, random weights)" if note else shown, png_path)

    table = Table(title=f"{shown} on {len(clips)} clips ({source})")
    table.add_column("task")
    table.add_column("n", justify="right")
    for col in ("agreement", "precision", "recall"):
        table.add_column(f"{col} @{threshold:.2f}", justify="right")
    table.add_column("ROC-AUC", justify="right")
    table.add_column("agreement @chosen", justify="right")
    for task, per in summary.get("per_task", {}).items():
        at = per["at_threshold"]
        table.add_row(task, str(per["n"]), _fmt(at["agreement"]), _fmt(at["precision"]), _fmt(at["recall"]),
                      _fmt(per["roc_auc"]), _fmt(per["at_chosen"]["agreement"]))
    if summary["n_scored"]:
        at = summary["at_threshold"]
        table.add_row("all", str(summary["n_scored"]), _fmt(at["agreement"]), _fmt(at["precision"]),
                      _fmt(at["recall"]), _fmt(summary["roc_auc"]), _fmt(summary["at_chosen"]["agreement"]),
                      style="bold")
    console = _console()
    if note:
        console.print(f"[bold yellow]{note}[/bold yellow]")
    console.print(table)
    console.print(f"chosen threshold ({criterion}): {_fmt(summary['chosen_threshold'])}  "
                  f"(current {threshold:.3f})")
    if summary["n_errors"]:
        first = next(r for r in results if r.error)
        console.print(f"[red]{summary['n_errors']} clip(s) could not be scored[/red], e.g. {first.id}: {first.error}")
    click.echo(str(json_path))
    if summary["n_scored"]:
        click.echo(str(png_path))
    if summary["n_scored"] == 0:
        sys.exit(1)


@rewarder.command("ab")
@click.argument("a")
@click.argument("b")
@labels_option
@click.option("--url-a", default=None, help="Score A through a running service.")
@click.option("--url-b", default=None, help="Score B through a running service.")
@click.option("--api-key", envvar="VLA_API_KEY", default=None)
@task_option
@criterion_option
@out_option
@click.pass_context
def ab(ctx, a, b, labels, url_a, url_b, api_key, tasks, criterion, out):
    """Score the same clips with rewarders A and B; print a side-by-side table and plot both."""
    from rich.table import Table

    from vla.rewarding.calibration import summarise
    from vla.rewarding.report import plot_ab

    clips = _load(labels, tasks)
    runs = []
    for name, url in ((a, url_a), (b, url_b)):
        scorer, shown, source = _make_scorer(ctx, name, url, api_key, {})
        threshold = float(scorer.threshold)
        results = _score_with_progress(scorer, clips, f"scoring {len(clips)} clips with {shown}")
        runs.append((shown, source, results, summarise(results, threshold, criterion)))
    (na, sa_src, ra, sa), (nb, sb_src, rb, sb) = runs
    if na == nb:
        na, nb = f"{na}(A)", f"{nb}(B)"
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"ab_{na}_vs_{nb}".replace("/", "_")
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    _report_json(json_path, {
        "labels": str(Path(labels).resolve()),
        "a": {"rewarder": na, "source": sa_src, **sa, "clips": _clip_rows(ra)},
        "b": {"rewarder": nb, "source": sb_src, **sb, "clips": _clip_rows(rb)},
    })
    plot_ab(ra, rb, na, nb, sa, sb, png_path)

    table = Table(title=f"A/B on {len(clips)} clips")
    table.add_column("metric")
    table.add_column(na, justify="right")
    table.add_column(nb, justify="right")
    def row(label, fa, fb=None):
        table.add_row(label, _fmt(fa(sa)), _fmt((fb or fa)(sb)))
    row("threshold", lambda s: s["threshold"])
    for key in ("agreement", "precision", "recall"):
        row(f"{key} @threshold", lambda s, k=key: (s["at_threshold"] or {}).get(k))
    row("ROC-AUC", lambda s: s["roc_auc"])
    row("chosen threshold", lambda s: s["chosen_threshold"])
    row("agreement @chosen", lambda s: (s["at_chosen"] or {}).get("agreement"))
    for task in sorted(set(sa.get("per_task", {})) | set(sb.get("per_task", {}))):
        row(f"{task} agreement", lambda s, t=task: ((s["per_task"].get(t) or {}).get("at_threshold") or {}).get("agreement"))
    row("clips not scored", lambda s: s["n_errors"])
    row("seconds per clip", lambda s: s.get("mean_seconds_per_clip"))
    _console().print(table)
    click.echo(str(json_path))
    click.echo(str(png_path))


@rewarder.command("score")
@click.option("--rewarder", "name", required=True)
@click.option("--goal", required=True, help="Goal text, e.g. 'lift the yellow cube'.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url", default=None, help="Score through a running service instead of in-process.")
@click.option("--api-key", envvar="VLA_API_KEY", default=None)
@set_option
@click.pass_context
def score_cmd(ctx, name, goal, images, url, api_key, overrides):
    """Score image files (one frame or a clip, oldest first) and print the result as JSON."""
    from vla.rewarding.frames import load_image_file
    from vla.rewarding.service import jsonable

    scorer, shown, _ = _make_scorer(ctx, name, url, api_key, _overrides(overrides))
    try:
        frames = [load_image_file(p) for p in images]
        result = scorer.score(frames, goal)
    except Exception as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    click.echo(json.dumps({"rewarder": shown, "score": result.score, "success": result.success,
                           "details": jsonable(result.details)}, indent=2))

