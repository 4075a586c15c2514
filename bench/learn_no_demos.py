"""Learning without demonstrations: the three sim tasks through `vla learn`, 4 simulated arms.

Each run is the real command (policy server, rewarder service, four arm processes on the same
control path as `vla run`); the learner sees only the heuristic rewarder's replies. Per task and
variant it prints:

- the episodes and CPU-minutes (all processes) by which the trainer's best guess first reached
  80% rewarder success on the held-out selection layouts;
- the final policy's success on 100 held-out test layouts, judged by the simulator's physics
  (the audit log, which the learner never reads), and by the rewarder.

Variants: ``clean`` (the heuristic rewarder as it is), ``noisy`` (20% of its answers flipped
at random: a stand-in for a noisy VLM), ``perturbed`` (an extra distractor cube and lighting
scaled by up to +-30% per layout, reported only). Targets (issue 11): clean >= 95/100 with 80%
reached within 1,000 episodes and 10 CPU-minutes; noisy >= 90/100.

    MUJOCO_GL=egl nice -n 10 .venv/bin/python bench/learn_no_demos.py --out /tmp/learn-bench
    ... --tasks lift --variants clean          # one run

The camera is calibrated once by `vla calibrate camera` on a simulated arm and shared. A
learning-curve plot of every run goes to OUT/learn_no_demos.png. The verdict is the last line:
PASS when every run made meets its targets, FAIL naming the misses otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VLA = str(Path(sys.executable).parent / "vla")
TASKS = ("lift", "push_left", "pick_place")
VARIANTS = {
    "clean": (),
    "noisy": ("--rewarder-noise", "flip:0.2"),
    "perturbed": ("--set-robot", "distractor=true", "--set-robot", "lighting=[0.7, 1.3]"),
}
TARGET = {"clean": 95, "noisy": 90, "perturbed": None}
# Seconds per episode: the primitives' plans are done after about 4.5 s (lift), 7 s (push) and 8 s
# (pick and place) and then hold still (l-prims' note); the simulator's limits are 12, 15 and 20 s.
# Every episode runs to its length (the loop never ends one on the simulator's check), so a
# length with a margin over the plan spares the CPU of simulating a still arm.
DURATION = {"lift": 7.0, "push_left": 10.0, "pick_place": 11.0}


def calibrate(out: Path) -> Path:
    lab = out / "calib-lab"
    (lab / "arms").mkdir(parents=True, exist_ok=True)
    (lab / "arms" / "sim01.yaml").write_text("robot: sim\nconfig:\n  cameras: [front]\n")
    (lab / "vla.yaml").write_text("arms:\n  sim01: arms/sim01.yaml\n")
    target = lab / "camera-front.yaml"
    if not target.exists():
        subprocess.run([VLA, "--config", str(lab / "vla.yaml"), "calibrate", "camera", "--arm", "sim01", "--yes",
                        "--out", str(target)], check=True, capture_output=True)
    return target


def run(task: str, variant: str, args, calibration: Path) -> dict:
    out = args.out / f"{task}-{variant}"
    command = [VLA, "learn", "--task", task, "--robot", "sim", "--arms", str(args.arms), "--rewarder", "heuristic",
               "--budget", str(args.budget), "--out", str(out), "--heldout", str(args.heldout),
               "--selection-layouts", str(args.selection_layouts), "--select-every", str(args.select_every),
               "--seed", str(args.seed), "--set-policy", f"calibration={calibration}", *VARIANTS[variant]]
    if args.durations:
        command += ["--duration", str(DURATION[task])]
    if args.stop_at is not None:
        command += ["--stop-at", str(args.stop_at)]
    if (out / "checkpoint.json").exists() and not (out / "result.json").exists():
        command.append("--resume")
    if not (out / "result.json").exists():
        t0 = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        (args.out / f"{task}-{variant}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            return {"task": task, "variant": variant, "error": (done.stderr or done.stdout).strip()[-600:],
                    "wall_s": time.monotonic() - t0}
    result = json.loads((out / "result.json").read_text())
    state = json.loads((out / "checkpoint.json").read_text())["run"]
    return {"task": task, "variant": variant, "result": result, "state": state, "out": str(out)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = [r for r in rows if "result" in r]
    if not made:
        return
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6), dpi=110, sharey=True)
    for ax, task in zip(axes, TASKS):
        for r in made:
            if r["task"] != task:
                continue
            sel = r["state"]["selections"]
            ax.plot([c["episodes"] for c in sel], [c["rewarder_success"] for c in sel], "-o", ms=3,
                    label=f"{r['variant']} (test {r['result']['heldout']['audited_successes']}/"
                          f"{r['result']['heldout']['episodes']})")
        ax.axhline(0.8, color="grey", lw=0.8, ls="--")
        ax.set_title(task)
        ax.set_xlabel("episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("rewarder success, held-out selection layouts")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/learn-bench"))
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--arms", type=int, default=4)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--selection-layouts", type=int, default=12)
    parser.add_argument("--select-every", type=int, default=3)
    parser.add_argument("--stop-at", type=float, default=1.0,
                        help="Stop a run when a selection check reaches this rewarder success (none: whole budget).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-limits", dest="durations", action="store_false",
                        help="Run every episode to the simulator's own task limit instead of DURATION.")
    args = parser.parse_args()
    if args.stop_at is not None and args.stop_at > 1:
        args.stop_at = None
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [t for t in args.tasks.split(",") if t]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    calibration = calibrate(args.out)
    rows, misses = [], []
    print(f"{'task':<11} {'variant':<10} {'episodes':>8} {'CPU-min':>8} {'80% at (episodes, CPU-min)':>28} "
          f"{'test physics':>13} {'test rewarder':>14}")
    for variant in variants:
        for task in tasks:
            row = run(task, variant, args, calibration)
            rows.append(row)
            if "error" in row:
                print(f"{task:<11} {variant:<10} failed: {row['error']}", flush=True)
                misses.append(f"{task}/{variant} failed")
                continue
            r = row["result"]
            h, to80 = r["heldout"], r["reached_80"]
            at80 = f"{to80['episodes']}, {to80['cpu_s'] / 60:.1f}" if to80 else "not reached"
            print(f"{task:<11} {variant:<10} {r['episodes']:>8} {r['cpu_s'] / 60:>8.1f} {at80:>28} "
                  f"{h['audited_successes']:>9}/{h['episodes']:<3} {h['rewarder_successes']:>10}/{h['episodes']:<3}",
                  flush=True)
            target = TARGET[variant]
            if target is not None:
                scaled = target * h["episodes"] / 100
                if h["audited_successes"] < scaled:
                    misses.append(f"{task}/{variant}: {h['audited_successes']}/{h['episodes']} < {target}/100")
                if variant == "clean" and (to80 is None or to80["episodes"] > 1000 or to80["cpu_s"] > 600):
                    misses.append(f"{task}/clean: 80% not within 1000 episodes and 10 CPU-min ({at80})")
    plot(rows, args.out / "learn_no_demos.png")
    (args.out / "learn_no_demos.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "state"} for r in rows], indent=2))
    print(f"plot: {args.out / 'learn_no_demos.png'}")
    print("PASS: every run met its targets" if not misses else "FAIL: " + "; ".join(misses))
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
