"""Success rate of a small ACT trained on scripted demonstrations of one simulated task.

Outside CI (it takes tens of minutes on a CPU). Three stages, each skipped when its output exists:

1. record: the simulator's scripted expert records EPISODES demonstrations with vla's
   EpisodeRecorder (seeds 0..EPISODES-1);
2. train: `vla train --policy act` on them (the exact command is printed);
3. evaluate: the trained policy drives the simulator on held-out seeds (10000+), executing
   ACTIONS_PER_CHUNK actions of each chunk, and the success rate is printed.

    MUJOCO_GL=egl .venv/bin/python bench/act_sim_success.py --work /tmp/act_bench \
        --task lift --episodes 40 --steps 3000 --eval 20
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

ACT_OPTIONS = {
    "pretrained_backbone_weights": "null",  # no hub download: the backbone learns from scratch
    "dim_model": "128",
    "n_heads": "4",
    "dim_feedforward": "512",
    "n_encoder_layers": "2",
    "n_decoder_layers": "1",
    "latent_dim": "16",
    "chunk_size": "20",
    "n_action_steps": "20",
}


def sim_config(args) -> dict:
    return {"task": args.task, "control_hz": args.hz, "image_height": args.height, "image_width": args.width,
            "cameras": args.cameras.split(",")}


def record(args, root: Path) -> Path:
    from vla_sim.demos import record_demonstrations
    from vla_sim.expert import ScriptedConfig, ScriptedPolicy
    from vla_sim.robot import SimConfig, SimRobot

    from vla.recording import EpisodeRecorder

    existing = [p for p in root.glob("*") if (p / "meta" / "info.json").is_file()]
    if existing:
        return existing[0]
    robot = SimRobot(SimConfig(**sim_config(args)))
    robot.connect()
    expert = ScriptedPolicy(ScriptedConfig(control_hz=args.hz, horizon=10))
    recorder = EpisodeRecorder(root, robot, args.task, "bench", run_id="demos")
    started = time.monotonic()

    def progress(seed, ok):
        print(f"recorded {seed + 1}/{args.episodes} (expert successes {ok}) {time.monotonic() - started:.0f} s", flush=True)

    record_demonstrations(robot, expert, recorder, args.task, range(args.episodes), on_episode=progress)
    recorder.close()
    robot.disconnect()
    return next(p for p in root.glob("*") if (p / "meta" / "info.json").is_file())


def train(args, dataset: Path, out: Path) -> Path:
    if (out / "pretrained_model" / "model.safetensors").is_file():
        return out / "pretrained_model"
    command = [str(Path(sys.executable).parent / "vla"), "train", "--policy", "act", "--dataset", str(dataset),
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--output", str(out)]
    for key, value in ACT_OPTIONS.items():
        command += ["-o", f"{key}={value}"]
    if args.env_state:
        # use_environment_state is a trainer setting (vla.yaml); pass it through a config file
        config = out.parent / "vla.yaml"
        config.write_text("plugins:\n  act:\n    use_environment_state: true\n")
        command[1:1] = ["--config", str(config)]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return out / "pretrained_model"


def evaluate(args, checkpoint: Path) -> float:
    from vla_sim.robot import SimConfig, SimRobot

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(checkpoint)))
    backend.warmup()
    robot = SimRobot(SimConfig(**sim_config(args)))
    robot.connect()
    successes = 0
    for i in range(args.eval):
        seed = 10000 + i
        robot.reset(args.task, seed=seed)
        backend.reset()
        obs = robot.observe()
        while not (robot.success() or robot.timed_out()):
            chunk = backend.infer([obs])[0]
            for action in chunk[: args.actions_per_chunk]:
                robot.act(action)
                if robot.success() or robot.timed_out():
                    break
            obs = robot.observe()
        successes += robot.success()
        print(f"eval seed {seed}: {'success' if robot.success() else 'failure'} ({successes}/{i + 1})", flush=True)
    robot.disconnect()
    return successes / args.eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/act_bench"))
    parser.add_argument("--task", default="lift")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval", type=int, default=20)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--cameras", default="front,wrist")
    parser.add_argument("--actions-per-chunk", type=int, default=10)
    parser.add_argument("--env-state", action="store_true", help="also feed the privileged object poses")
    parser.add_argument("--stage", choices=("all", "record", "train", "eval"), default="all")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = record(args, args.work / "recordings")
    info = json.loads((dataset / "meta" / "info.json").read_text())
    print(f"dataset {dataset}: {info['total_episodes']} episodes, {info['total_frames']} frames", flush=True)
    if args.stage == "record":
        return
    name = f"act_{args.steps}" + ("_env" if args.env_state else "")
    checkpoint = train(args, dataset, args.work / name)
    if args.stage == "train":
        return
    rate = evaluate(args, checkpoint)
    print(f"ACT ({name}) success rate on {args.task}: {rate:.0%} over {args.eval} held-out seeds")
    (args.work / f"{name}_result.json").write_text(json.dumps({"task": args.task, "success_rate": rate, "eval": args.eval,
                                                               "steps": args.steps, "episodes": args.episodes}))


if __name__ == "__main__":
    main()
