"""Distillation: episodes a policy got right, as LeRobot datasets, trained into ACT and measured.

Outside CI (about two hours on two cores). The path a lab takes, through vla's own commands:

1. record: a policy server (`vla serve`) and RUNS concurrent `vla run --arm arm01 --task lift
   --record DIR` write RUNS LeRobot datasets of EPISODES episodes each (seeds 0.., 1000.., ...),
   cameras front and wrist at 96x96, 10 Hz. The source is the simulator's scripted expert
   (`--source scripted`); `--source learn` records the rewarder-approved episodes of
   `vla learn --record` instead, and `--dataset DIR` (repeatable) takes datasets recorded elsewhere;
2. train: `vla train --policy act --dataset A --dataset B ...` (a small ACT from scratch on 64x64
   frames, its backbone's batch norms trained; the exact command is printed), niced, keeping a
   checkpoint every --save-every steps;
3. evaluate: `vla serve --policy lerobot` serves the checkpoint (the last, or --eval-step's) and
   `vla eval --task lift --episodes 50 --seed 10000` (held-out seeds) drives the simulated arm
   through it over the WebSocket, with the lab's client settings.

It prints the training steps, epochs and CPU-minutes, the success rate over the evaluation
episodes with its Wilson 95% interval, the machine's load while it ran, and the verdict last
(target: at least 80% on lift). Each stage is skipped when its output exists in --work, so a
stopped run continues; --fresh starts over.

Measured on this 2-core machine (shared, one torch thread, 0.36 CPU-s per step): see the README's
"Distilling into a VLA" for the figures. Far below the target: the policy fits its data open
loop (about 1 cm at the first frame) but drifts closed loop into states the expert's perfect
demonstrations never show.

    MUJOCO_GL=egl .venv/bin/python bench/distill_act.py --work /tmp/distill
    .venv/bin/python bench/distill_act.py --work /tmp/dart --action-noise 0.02   # DART recordings
    .venv/bin/python bench/distill_act.py --work /tmp/distill --eval-step 6000   # a checkpoint on the way
    .venv/bin/python bench/distill_act.py --work /tmp/dart --action-noise 0.02 --steps 4000 \
        --init-from /tmp/dart/act_8000/checkpoints/004000/pretrained_model   # 4,000 more steps after a stop
    .venv/bin/python bench/distill_act.py --work /tmp/d2 --dataset rec/A --dataset rec/B
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from vla_lerobot.trainer import continued_from

os.environ.setdefault("MUJOCO_GL", "egl")
VLA = str(Path(sys.executable).parent / "vla")
TARGET = 0.80

# A small ACT from scratch: no ImageNet download (none can be fetched here), a narrow
# transformer, a learning rate fit for training from scratch (LeRobot's 1e-5 is for finetuning a
# pretrained backbone).
ACT_OPTIONS = {
    "pretrained_backbone_weights": "null",
    "dim_model": "128",
    "n_heads": "4",
    "dim_feedforward": "512",
    "n_encoder_layers": "2",
    "n_decoder_layers": "1",
    "latent_dim": "16",
    "chunk_size": "20",
    "n_action_steps": "20",
    "optimizer_lr": "3e-4",
    "optimizer_lr_backbone": "3e-4",
}


def wilson(n: int, c: int, z: float = 1.96) -> tuple[float, float]:
    from vla.evaluation.metrics import wilson_interval

    return wilson_interval(n, c, z)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nice(command: list[str], level: int) -> list[str]:
    return (["nice", "-n", str(level)] if level and shutil.which("nice") else []) + command


def write_lab(args, lab: Path, checkpoint: Path | None = None) -> Path:
    """A lab folder with one simulated arm at the bench's image size and control rate: for recording
    (the arm perturbed by --action-noise) or, with ``checkpoint``, for evaluating (never perturbed)."""
    (lab / "arms").mkdir(parents=True, exist_ok=True)
    arm = "arm01.yaml" if checkpoint is None else "arm01-eval.yaml"
    noise = f"  action_noise: {args.action_noise:g}\n  action_noise_s: {args.action_noise_s:g}\n" if checkpoint is None else ""
    (lab / "arms" / arm).write_text(
        "robot: sim\nconfig:\n"
        f"  task: {args.task}\n  control_hz: {args.hz:g}\n  cameras: [{args.cameras}]\n"
        f"  image_height: {args.record_size}\n  image_width: {args.record_size}\n" + noise
    )
    plugins = {"scripted": {"control_hz": args.hz, "horizon": args.actions_per_chunk}}
    if checkpoint is not None:
        plugins["lerobot"] = {"path": str(checkpoint), "device": "cpu"}
    config = {
        "lab": "distill",
        "log_dir": "logs",
        "client": {"actions_per_chunk": args.actions_per_chunk, "chunk_size_threshold": args.threshold, "merge": args.merge},
        "arms": {"arm01": f"arms/{arm}"},
        "plugins": plugins,
    }
    path = lab / ("vla.yaml" if checkpoint is None else "vla-eval.yaml")
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


@contextlib.contextmanager
def serving(config: Path, policy: str, log: Path, level: int, timeout_s: float = 300.0):
    """`vla serve --policy POLICY` in a subprocess; yields its URL once /healthz says ready."""
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(nice([VLA, "--config", str(config), "serve", "--policy", policy, "--host", "127.0.0.1",
                                        "--port", str(port)], level), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise SystemExit(f"vla serve --policy {policy} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"vla serve --policy {policy} not ready after {timeout_s:.0f} s; see {log}")
            time.sleep(0.5)
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run(command: list[str], level: int, log: Path | None = None) -> None:
    shown = " ".join(Path(c).name if c == VLA else c for c in command)
    print(f"$ {shown}", flush=True)
    if log is None:
        result = subprocess.run(nice(command, level))
    else:
        with open(log, "w") as out:
            result = subprocess.run(nice(command, level), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log.read_text()[-3000:] if log is not None else ""
        raise SystemExit(f"{shown} failed with exit code {result.returncode}\n{tail}")


def datasets_in(folder: Path) -> list[Path]:
    """The LeRobot datasets in ``folder`` or one level below (one folder per recording run)."""
    return sorted(p for pattern in ("*", "*/*") for p in folder.glob(pattern) if (p / "meta" / "info.json").is_file())


def record(args, lab_config: Path, out: Path) -> list[Path]:
    """RUNS `vla run --record` runs of the scripted expert: one dataset per run."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / ".done"
    if done.is_file():
        return datasets_in(out)
    for stale in datasets_in(out):  # a run cut short: record it again
        shutil.rmtree(stale)
    with serving(lab_config, "scripted", out / "serve.log", args.nice) as url:
        # The runs at once, each into its own folder: the sim runs in real time (vla run's clock),
        # so a run is mostly waiting, and one dataset per run is what a lab with several arms has.
        procs = []
        for i in range(args.runs):
            folder = out / f"run{i}"
            folder.mkdir(exist_ok=True)
            command = [VLA, "--config", str(lab_config), "run", "--arm", "arm01", "--task", args.task, "--episodes",
                       str(args.episodes), "--seed", str(1000 * i), "--policy-url", url, "--record", str(folder)]
            print(f"$ {' '.join(Path(c).name if c == VLA else c for c in command)}", flush=True)
            with open(out / f"run{i}.log", "w") as log:
                procs.append(subprocess.Popen(nice(command, args.nice), stdout=log, stderr=subprocess.STDOUT))
        for i, proc in enumerate(procs):
            if proc.wait() != 0:
                raise SystemExit(f"recording run {i} failed with exit code {proc.returncode}; see {out / f'run{i}.log'}")
    done.write_text("")
    return datasets_in(out)


def record_learned(args, out: Path) -> list[Path]:
    """`vla learn --record`: the rewarder-approved episodes of a learning run, one dataset per arm."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / ".done"
    if done.is_file():
        return datasets_in(out)
    probe = subprocess.run([VLA, "learn", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise SystemExit("--source learn needs `vla learn` (issue 11's learning loop); this install has none")
    for stale in datasets_in(out):
        shutil.rmtree(stale)
    command = [VLA, "learn", "--task", args.task, "--robot", "sim", "--arms", str(args.runs), "--rewarder", "heuristic",
               "--budget", str(args.episodes), "--out", str(args.work / "learn"), "--record", str(out),
               "--set-robot", f"control_hz={args.hz:g}", "--set-robot", f"cameras=[{args.cameras}]"]
    if args.record_size:
        command += ["--set-robot", f"image_height={args.record_size}", "--set-robot", f"image_width={args.record_size}"]
    run(command, args.nice, out / "learn.log")
    done.write_text("")
    return datasets_in(out)


def train(args, datasets: list[Path], out: Path) -> Path:
    if (out / "pretrained_model" / "model.safetensors").is_file():
        return out
    # trainer settings (plugins.act in vla.yaml), not policy options
    act: dict = {"save_every": args.save_every}
    if args.train_size:
        act["image_size"] = [args.train_size, args.train_size]
    if args.init_from:
        act["init_from"] = str(args.init_from)
    config = out.parent / "train.yaml"
    config.write_text(json.dumps({"plugins": {"act": act}}))
    command = [VLA, "--config", str(config), "train", "--policy", "act"]
    for dataset in datasets:
        command += ["--dataset", str(dataset)]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--output", str(out), "--device", "cpu"]
    for key, value in ACT_OPTIONS.items():
        command += ["-o", f"{key}={value}"]
    run(command, args.nice)
    return out


def evaluate(args, lab: Path, checkpoint: Path, out: Path) -> dict:
    results = out / "results.json"
    if results.is_file():
        return json.loads(results.read_text())
    config = write_lab(args, lab, checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    with serving(config, "lerobot", out / "serve.log", args.nice) as url:
        run([VLA, "--config", str(config), "eval", "--arm", "arm01", "--task", args.task, "--episodes", str(args.eval),
             "--seed", "10000", "--k", "1", "--policy-url", url, "--out", str(out)], args.nice, out / "eval.log")
    return json.loads(results.read_text())


def successes(results: dict, task: str) -> tuple[int, int]:
    """(successes, episodes) of one task in `vla eval`'s results.json."""
    tasks = results["tasks"]
    entry = tasks.get(task) if isinstance(tasks, dict) else None
    if entry is None:
        entry = next(iter(tasks.values())) if isinstance(tasks, dict) else tasks[0]
    return int(entry["successes"]), int(entry["episodes"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/distill_act"))
    parser.add_argument("--dataset", type=Path, action="append", default=[],
                        help="train on this LeRobot dataset instead of recording (repeatable)")
    parser.add_argument("--task", default="lift")
    parser.add_argument("--runs", type=int, default=4, help="recording runs, one dataset each (--source learn: arms)")
    parser.add_argument("--episodes", type=int, default=100,
                        help="episodes per recording run (--source learn: the learning budget)")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval", type=int, default=50, help="held-out evaluation episodes")
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--source", choices=("scripted", "learn"), default="scripted",
                        help="who records: the scripted expert (vla run --record) or vla learn --record")
    parser.add_argument("--action-noise", type=float, default=0.0,
                        help="radians: while recording, the sim arm drifts off the expert's path by a slowly varying "
                             "offset of this size and the expert steers it back (DART); 0: perfect demonstrations")
    parser.add_argument("--action-noise-s", type=float, default=0.5, help="the drift's correlation time (s)")
    parser.add_argument("--record-size", type=int, default=96, help="the sim cameras render SIZE x SIZE")
    parser.add_argument("--train-size", type=int, default=64, help="ACT trains on (and asks for) SIZE x SIZE frames; 0: as recorded")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of training and serving (1 wastes least on a shared, loaded CPU)")
    parser.add_argument("--cameras", default="front, wrist")
    parser.add_argument("--actions-per-chunk", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--merge", default="latest", help="the client's chunk merge (latest, weighted_average, rtc)")
    parser.add_argument("--nice", type=int, default=15, help="niceness of every subprocess (0: none)")
    parser.add_argument("--save-every", type=int, default=2000,
                        help="also keep a checkpoint every N steps (OUT/act_STEPS/checkpoints/), to evaluate a long run as it goes")
    parser.add_argument("--eval-step", type=int, default=0,
                        help="evaluate the run's checkpoint at this step (from --save-every) instead of its last")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="continue from this checkpoint (an earlier run's .../pretrained_model) for --steps more "
                             "steps, in OUT/act_STEPS_from_<its steps>; the figures printed are the runs' totals")
    parser.add_argument("--fresh", action="store_true", help="delete --work first")
    args = parser.parse_args()
    if args.fresh and args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.monotonic()

    lab = args.work / "lab"
    lab_config = write_lab(args, lab)
    cpu = children_cpu_s()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every vla subprocess inherits it
    if args.dataset:
        datasets = args.dataset
        source = "given"
    elif args.source == "learn":
        datasets = record_learned(args, args.work / "datasets")
        source = "vla learn --record (rewarder-approved episodes)"
    else:
        datasets = record(args, lab_config, args.work / "datasets")
        source = "the scripted expert through vla serve + vla run --record" + (
            f", the arm perturbed by {args.action_noise:g} rad (DART)" if args.action_noise else "")
    record_cpu = children_cpu_s() - cpu
    for dataset in datasets:
        info = json.loads((dataset / "meta" / "info.json").read_text())
        print(f"dataset {dataset}: {info['total_episodes']} episodes, {info['total_frames']} frames", flush=True)

    run_dir = args.work / f"act_{args.steps}"
    if args.init_from:
        if not (args.init_from / "model.safetensors").is_file():
            raise SystemExit(f"--init-from {args.init_from}: no model.safetensors there (name a .../pretrained_model folder)")
        earlier = continued_from(str(args.init_from), {"steps": 0, "epochs": 0.0, "cpu_seconds": 0.0, "seconds": 0.0})
        run_dir = args.work / f"act_{args.steps}_from_{earlier.get('init_from_steps', args.init_from.parent.name)}"
    if args.eval_step:
        # a checkpoint the run left on its way (--save-every): the same weights a run of
        # --steps EVAL_STEP ends with, as ACT's learning rate does not depend on the total
        run_dir = run_dir / "checkpoints" / f"{args.eval_step:06d}"
        if not (run_dir / "pretrained_model" / "model.safetensors").is_file():
            raise SystemExit(f"no checkpoint at step {args.eval_step} in {run_dir.parent} (yet)")
        eval_out = args.work / f"eval_{run_dir.parent.parent.name[4:]}@{args.eval_step}_{args.eval}"
    else:
        run_dir = train(args, datasets, run_dir)
        eval_out = args.work / f"eval_{run_dir.name[4:]}_{args.eval}"
    summary = json.loads((run_dir / "vla_train.json").read_text())
    if args.init_from and "steps_total" not in summary:  # a checkpoint saved before vla_train.json kept totals
        summary.update(continued_from(str(args.init_from), summary))
    for key in ("steps", "epochs", "cpu_seconds", "seconds"):  # a continued run: the runs together
        summary[key] = summary.get(f"{key}_total", summary[key])
    t0 = time.monotonic()
    results = evaluate(args, lab, run_dir / "pretrained_model", eval_out)
    eval_wall = time.monotonic() - t0
    c, n = successes(results, args.task)
    low, high = wilson(n, c)
    load_after = os.getloadavg()[0]

    print()
    print(f"data: {summary['episodes']} episodes, {summary['frames']} frames in {len(summary['datasets'])} datasets "
          f"({source}{f', {record_cpu / 60:.1f} CPU-minutes' if record_cpu > 1 else ''})")
    print(f"training: {summary['steps']} steps x batch {summary['batch_size']} = {summary['epochs']:.1f} epochs, "
          f"{summary['cpu_seconds'] / 60:.1f} CPU-minutes, {summary['seconds'] / 60:.1f} min wall "
          f"(final loss {summary['final_loss']:.4f})")
    print(f"evaluation: {n} held-out episodes (seeds 10000..{10000 + n - 1}) in {eval_wall / 60:.1f} min wall, "
          f"cameras {args.cameras} rendered at {args.record_size}x{args.record_size}, policy input "
          f"{args.train_size or args.record_size}x{args.train_size or args.record_size}, {args.hz:g} Hz")
    print(f"load average (1 min) {load_before:.1f} at the start, {load_after:.1f} at the end, on {os.cpu_count()} cores; "
          f"bench wall {(time.monotonic() - started) / 60:.1f} min")
    print(f"success@{n} on {args.task}: {c}/{n} = {c / n:.0%} (Wilson 95% {low:.0%}-{high:.0%})")
    (args.work / "result.json").write_text(json.dumps({
        "task": args.task, "successes": c, "episodes": n, "rate": c / n, "wilson95": [low, high],
        "steps": summary["steps"], "batch_size": summary["batch_size"], "epochs": summary["epochs"],
        "final_loss": summary["final_loss"], "loss_per_100_steps": summary.get("loss_per_100_steps"),
        "frames": summary["frames"], "source": source, "cameras": args.cameras, "record_size": args.record_size,
        "train_size": args.train_size, "action_noise": args.action_noise, "train_cpu_s": summary["cpu_seconds"],
        "train_wall_s": summary["seconds"], "datasets": summary["datasets"], "eval_wall_s": eval_wall,
        "load_average": [load_before, load_after]}, indent=2))
    verdict = "PASS" if c / n >= TARGET else "FAIL"
    print(f"{verdict}: distilled ACT success@{n} on {args.task} {c / n:.0%} (target >= {TARGET:.0%})")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
