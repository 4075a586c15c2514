"""`vla board`: the evaluation board, a static HTML page from `vla eval` results over time.

Per task, one row per evaluation (a ``results.json``), oldest first: its checkpoint, episodes,
success@K with 95% intervals, time-to-success, the gentle-failure rate and a thumbnail of the
evaluation's video. Then an A/B table: per task, the newest checkpoint against the one before.

- success@K's interval is Wilson's interval on the per-episode rate p, carried through
  success@K = 1 - (1 - p)^K (monotone in p, so the bounds map to bounds, for independent
  attempts);
- time-to-success is the median episode length of the successful episodes;
- a gentle failure is an episode with a safety stop (a chunk the safety layer rejected), an
  incident the robot reported (the simulator: an object knocked off the table) or a hold after
  start-up (an underflow or a late target);
- the A/B difference of success rates comes with Newcombe's interval (from the two Wilson
  intervals); when it excludes 0 the change is marked as significant at 95%.

The page, its data (``board.json``), the copied videos and the thumbnails go into one folder,
so it can be served or archived as it is.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import attrs

from vla.evaluation.metrics import wilson_interval
from vla.lab.records import checkpoint_of, median

VIDEO_SUFFIXES = (".mp4", ".gif")


@attrs.define
class Evaluation:
    path: Path
    results: dict
    checkpoint: str
    when: float
    ident: str


def find_evaluations(paths: list[Path]) -> tuple[list[Evaluation], list[tuple[Path, str]]]:
    """Every results.json under ``paths`` (files or folders), oldest first."""
    files, skipped = [], []
    for p in paths:
        p = Path(p)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(p.rglob("results.json")))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    evals = []
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as exc:
            skipped.append((f, f"{type(exc).__name__}: {exc}"))
            continue
        if not (isinstance(data, dict) and isinstance(data.get("tasks"), dict) and "k" in data):
            skipped.append((f, "not a `vla eval` results file"))
            continue
        when = float(data.get("finished_at") or f.stat().st_mtime)
        evals.append(Evaluation(f, data, checkpoint_of(data, f), when, ""))
    evals.sort(key=lambda e: (e.when, str(e.path)))
    for i, e in enumerate(evals):
        e.ident = f"e{i + 1:03d}"
    return evals, skipped


def success_at_k_interval(n: int, c: int, k: int) -> tuple[float, float]:
    lo, hi = wilson_interval(n, c)
    return 1 - (1 - lo) ** k, 1 - (1 - hi) ** k


def newcombe(n1: int, c1: int, n2: int, c2: int) -> tuple[float, float, float]:
    """p1 - p2 and its 95% interval (Newcombe's hybrid score method, from the Wilson intervals)."""
    p1, p2 = c1 / n1, c2 / n2
    l1, u1 = wilson_interval(n1, c1)
    l2, u2 = wilson_interval(n2, c2)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def gentle(run: dict) -> dict[str, bool]:
    counts = run.get("counts") or {}
    return {
        "safety_stop": int(counts.get("rejected", 0)) > 0,
        "knocked_off": bool(run.get("incidents")),
        "hold": int(counts.get("underflows", 0)) + int(counts.get("late", 0)) > 0,
    }


def task_row(e: Evaluation, task: str, r: dict) -> dict[str, Any]:
    runs = [x for x in r.get("runs", []) if not x.get("interrupted")]
    n, c = int(r["episodes"]), int(r["successes"])
    ks = [int(k) for k in e.results["k"]]
    flags = [gentle(x) for x in runs]
    durations = [float(x["duration_s"]) for x in runs if x.get("success")]
    row = {
        "evaluation": e.ident, "results": str(e.path), "checkpoint": e.checkpoint, "when": e.when, "task": task,
        "episodes": n, "successes": c,
        "success_at": {str(k): r["success_at"].get(str(k)) for k in ks},
        "success_at_ci95": {str(k): list(success_at_k_interval(n, c, k)) if n and r["success_at"].get(str(k)) is not None
                            else None for k in ks},
        "time_to_success_s": median(durations),
        "gentle_failures": sum(1 for f in flags if any(f.values())),
        "gentle_failure_rate": (sum(1 for f in flags if any(f.values())) / len(flags)) if flags else None,
        "safety_stops": sum(f["safety_stop"] for f in flags),
        "knocked_off": sum(f["knocked_off"] for f in flags),
        "holds": sum(f["hold"] for f in flags),
        "video": None, "thumbnail": None,
    }
    return row


def ab_rows(rows_by_task: dict[str, list[dict]]) -> list[dict]:
    """Per task: the newest checkpoint's totals against the checkpoint evaluated before it."""
    out = []
    for task, rows in rows_by_task.items():
        order: list[str] = []
        for row in rows:
            if row["checkpoint"] in order:
                order.remove(row["checkpoint"])
            order.append(row["checkpoint"])  # by the time each checkpoint was last evaluated
        if len(order) < 2:
            continue
        new, old = order[-1], order[-2]
        tot = {cp: [sum(x["episodes"] for x in rows if x["checkpoint"] == cp),
                    sum(x["successes"] for x in rows if x["checkpoint"] == cp)] for cp in (new, old)}
        (n1, c1), (n2, c2) = tot[new], tot[old]
        if not n1 or not n2:
            continue
        d, lo, hi = newcombe(n1, c1, n2, c2)
        out.append({"task": task, "checkpoint": new, "previous": old, "episodes": n1, "successes": c1,
                    "rate": c1 / n1, "ci95": list(wilson_interval(n1, c1)), "previous_episodes": n2,
                    "previous_successes": c2, "previous_rate": c2 / n2, "previous_ci95": list(wilson_interval(n2, c2)),
                    "difference": d, "difference_ci95": [lo, hi],
                    "verdict": "better" if lo > 0 else "worse" if hi < 0 else "no clear change"})
    return out


def _thumbnail(video: Path, out: Path) -> Path | None:
    """The video's first frame as a small PNG (None when it cannot be read)."""
    from PIL import Image

    try:
        if video.suffix.lower() == ".gif":
            image = Image.open(video).convert("RGB")
        else:
            import imageio.v2 as imageio

            with imageio.get_reader(video) as reader:
                image = Image.fromarray(reader.get_data(0))
    except Exception:  # a broken or unreadable video shows as a link without a picture
        return None
    image.thumbnail((192, 192))
    image.save(out)
    return out


def build(paths: list[Path], out: Path, title: str = "evaluation board") -> dict[str, Any]:
    from vla.fleet.render import environment

    evals, skipped = find_evaluations(paths)
    if not evals:
        raise ValueError("no `vla eval` results (results.json) found in " + ", ".join(str(p) for p in paths))
    out = Path(out)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    rows_by_task: dict[str, list[dict]] = {}
    for e in evals:
        video = e.results.get("video")
        video_path = e.path.parent / video if video else None
        if video_path is None or not video_path.is_file():
            found = sorted(p for p in e.path.parent.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            video_path = found[0] if found else None
        copied = thumb = None
        if video_path is not None:
            copied = media / f"{e.ident}{video_path.suffix.lower()}"
            shutil.copyfile(video_path, copied)
            thumb = _thumbnail(copied, media / f"{e.ident}.png")
        for task, r in e.results["tasks"].items():
            row = task_row(e, task, r)
            if copied is not None:
                row["video"] = f"media/{copied.name}"
                row["thumbnail"] = f"media/{thumb.name}" if thumb is not None else None
            rows_by_task.setdefault(task, []).append(row)
    ks = sorted({int(k) for e in evals for k in e.results["k"]})
    data = {"title": title, "k": ks, "evaluations": [{"id": e.ident, "results": str(e.path), "checkpoint": e.checkpoint,
                                                      "when": e.when} for e in evals],
            "tasks": rows_by_task, "ab": ab_rows(rows_by_task),
            "skipped": [{"path": str(p), "reason": why} for p, why in skipped]}
    (out / "board.json").write_text(json.dumps(data, indent=2))
    html = environment("vla.lab").get_template("board.html.j2").render(**data, fmt_time=_fmt_time)
    (out / "index.html").write_text(html)
    return data


def _fmt_time(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
