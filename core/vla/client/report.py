"""`vla report RUN`: draw a run's tick log as a PNG (queue, round trips, seams, clamps, joints)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from vla.client.ticklog import read_log


def summarize(records: list[dict]) -> dict:
    ticks = [r for r in records if r.get("type") == "tick"]
    chunks = [r for r in records if r.get("type") == "chunk"]
    events = [r for r in records if r.get("type") == "event"]
    rtts = np.array([c["rtt_ms"] for c in chunks if c.get("rtt_ms") is not None], dtype=float)
    seconds = (ticks[-1]["t"] - ticks[0]["t"]) if len(ticks) > 1 else 0.0
    underflows = sum(1 for t in ticks if t.get("underflow"))
    clamps: dict[str, int] = {}
    for t in ticks:
        for name in t.get("clamps") or ():
            clamps[name] = clamps.get(name, 0) + 1
    late = sum(
        1 for t in ticks if not t.get("hold") and t.get("deadline") is not None and t["t_exec"] > t["deadline"]
    )
    return {
        "ticks": len(ticks),
        "seconds": round(seconds, 3),
        "chunks": len(chunks),
        "holds": sum(1 for t in ticks if t.get("hold")),
        "underflows": underflows,
        "underflows_per_min": round(underflows / (seconds / 60.0), 3) if seconds > 0 else 0.0,
        "rtt_ms_median": round(float(np.median(rtts)), 3) if len(rtts) else None,
        "rtt_ms_p90": round(float(np.percentile(rtts, 90)), 3) if len(rtts) else None,
        "max_discontinuity": round(max((c.get("discontinuity") or 0.0 for c in chunks), default=0.0), 6),
        "clamps": clamps,
        "rejected_chunks": sum(1 for e in events if e.get("event") == "rejected"),
        **_errors(events),
        "disconnects": sum(1 for e in events if e.get("event") == "disconnected"),
        "executed_after_deadline": late,
    }


def _errors(events: list[dict]) -> dict:
    """Requests the server answered with an error frame: how many, and the most common code with
    its last message (a run that recorded an arm standing still says why here)."""
    from collections import Counter

    errors = [e for e in events if e.get("event") == "error"]
    codes = Counter(str(e.get("code")) for e in errors)
    top = codes.most_common(1)[0][0] if codes else None
    message = next((e.get("message") for e in reversed(errors) if str(e.get("code")) == top), None)
    return {"errors": len(errors), "errors_by_code": dict(codes), "most_common_error": top,
            "most_common_error_message": message}


def plot_run(records: list[dict], out: Path, title: str = "") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = [r for r in records if r.get("type") == "tick"]
    chunks = [r for r in records if r.get("type") == "chunk"]
    events = [r for r in records if r.get("type") == "event"]
    if not ticks:
        raise click.ClickException("the log has no tick records (did the run start?)")
    summary = summarize(records)
    t = np.array([r["t"] for r in ticks], dtype=float)
    queue = np.array([r.get("queue") or 0 for r in ticks], dtype=float)
    hold = np.array([bool(r.get("hold")) for r in ticks])
    under = np.array([bool(r.get("underflow")) for r in ticks])
    commands = np.array([r["command"] for r in ticks], dtype=float)

    fig, axes = plt.subplots(5, 1, figsize=(11, 13), sharex=True)
    ax = axes[0]
    ax.plot(t, queue, lw=1, label="queue length")
    if hold.any():
        ax.scatter(t[hold & ~under], queue[hold & ~under], s=6, c="orange", label="hold (startup/disconnected)")
    if under.any():
        ax.scatter(t[under], queue[under], s=14, c="red", marker="x", label="underflow")
    ax.set_ylabel("actions queued")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    if chunks:
        ax.plot([c["t"] for c in chunks], [c.get("rtt_ms") or np.nan for c in chunks], ".-", lw=0.8, label="round trip")
        timing = [((c.get("server_timing") or {}).get("infer_ms")) for c in chunks]
        if any(v is not None for v in timing):
            ax.plot([c["t"] for c in chunks], [np.nan if v is None else v for v in timing], ".", label="server infer")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("ms")

    ax = axes[2]
    if chunks:
        ax.stem([c["t"] for c in chunks], [c.get("discontinuity") or 0.0 for c in chunks], basefmt=" ")
    ax.set_ylabel("seam jump (rad)")

    ax = axes[3]
    kinds = sorted({k for r in ticks for k in (r.get("clamps") or ())})
    for kind in kinds:
        ax.plot(t, np.cumsum([kind in (r.get("clamps") or ()) for r in ticks]), label=kind)
    rejected = [e["t"] for e in events if e.get("event") == "rejected"]
    if rejected:
        ax.plot(rejected, np.arange(1, len(rejected) + 1), "k+", label="rejected chunks")
    for e in events:
        if e.get("event") == "disconnected":
            for a in axes:
                a.axvline(e["t"], color="red", lw=0.6, ls="--")
    if kinds or rejected:
        ax.legend(loc="upper left", fontsize=8)
    ax.set_ylabel("safety (cumulative)")

    ax = axes[4]
    names = None
    for r in records:
        if r.get("type") == "run":
            names = r.get("joint_names")
    for j in range(commands.shape[1]):
        ax.plot(t, commands[:, j], lw=0.8, label=(names[j] if names and j < len(names) else f"joint {j}"))
    ax.set_ylabel("command (rad)")
    ax.set_xlabel("time since start (s)")
    ax.legend(loc="upper right", fontsize=7, ncol=3)

    rtt = summary["rtt_ms_median"]
    failed = (f", {summary['errors']} failed requests (mostly {summary['most_common_error']})"
              if summary["errors"] else "")
    fig.suptitle(
        f"{title}\n{summary['ticks']} ticks, {summary['chunks']} chunks, {summary['underflows']} underflows "
        f"({summary['underflows_per_min']}/min), median round trip {rtt if rtt is not None else '-'} ms{failed}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return summary


def resolve_run(run: str, log_dir: Path) -> Path:
    path = Path(run)
    if path.is_file():
        return path
    for candidate in (log_dir / run, log_dir / f"{run}.jsonl", log_dir / f"run_{run}.jsonl"):
        if candidate.is_file():
            return candidate
    raise click.ClickException(f"no tick log {run!r} (looked for the file and in {log_dir})")


@click.command()
@click.argument("run")
@click.option("--out", "out_path", default=None, type=click.Path(dir_okay=False), help="PNG to write (default: beside the log).")
@click.pass_context
def report(ctx, run, out_path):
    """Plot a run's tick log to PNG. RUN is the log file or its run id in the lab's log folder."""
    import json

    from vla.cli.common import lab_config

    loaded = lab_config(ctx)
    path = resolve_run(run, loaded.base_dir / loaded.config.log_dir)
    records = list(read_log(path))
    out = Path(out_path) if out_path else path.with_suffix(".png")
    header = next((r for r in records if r.get("type") == "run"), {})
    title = f"{path.name}: {header.get('robot', '?')} / {header.get('merge', '?')} / {header.get('task', '')}"
    summary = plot_run(records, out, title)
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"wrote {out}")
