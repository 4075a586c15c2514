"""CMA-ES over the primitives' parameters, straight against the simulator, scored by the heuristic rewarder.

A check of the policy's learnability without `vla learn` around it (no servers, no arm
processes): per task, CMA-ES (`cma`) proposes parameters; each generation runs every candidate
on the same freshly drawn layouts; a candidate's fitness is the heuristic rewarder's score of
the first and last front frames minus a small effort penalty (1.0 per metre of tool path). The
learner never sees the simulator's physics check. The final mean and the means after the three best
generations are scored by the rewarder on 10 validation layouts; the best of them is judged
on held-out layouts (seeds 900000+) by the physics check, with the episode ended at the first
tick of success as `vla eval` does.

    MUJOCO_GL=egl nice -n 10 .venv/bin/python bench/primitives_direct.py --budget 600 --heldout 100

It prints, per task: the initial parameters' held-out success, the episodes and CPU time of the
search, the episodes by which the rewarder-estimated success of a generation first reached 80%,
and the held-out success by physics. Verdict last: PASS when every task reaches --target.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

# Fitness lost per metre of tool path. The past-line score keeps rising as the cube goes further:
# at 0.5/m the search still shoved it 9 cm past the line; at 1.0/m the best is 4-5 cm.
EFFORT_PER_M = 1.0

VALIDATION = 10  # rewarder-scored layouts that choose among the final candidates

TASKS = {"lift": "lift the yellow cube", "pick_place": "put the red cube in the blue bowl",
         "push_left": "push the green cube to the left of the line"}


def truth_calibration(robot, path: Path):
    """The sim camera's true calibration as a file (the policy only ever loads a file)."""
    try:
        from vla_sim import camera_truth  # l-calib's, once merged

        cal = camera_truth("front", robot.config.image_width, robot.config.image_height)
    except ImportError:
        import mujoco

        from vla.calibration.camera import CameraCalibration, intrinsics_from_fovy

        m, d = robot.model, robot.data
        mujoco.mj_forward(m, d)
        cid = m.camera("front").id
        xmat = d.cam_xmat[cid].reshape(3, 3)
        R = np.stack([xmat[:, 0], -xmat[:, 1], -xmat[:, 2]])
        K = intrinsics_from_fovy(float(m.cam_fovy[cid]), robot.config.image_width, robot.config.image_height)
        cal = CameraCalibration("front", robot.config.image_width, robot.config.image_height, K, R, -R @ d.cam_xpos[cid],
                                rms_px=0.0, source="sim-truth")
    return cal.save(path)


class Fixed:
    def __init__(self, params):
        self.params = params

    def params_for(self, session):
        return self.params


def path_length(plan, kinematics, every=3) -> float:
    """Metres the tool point travels along a plan (forward kinematics every few ticks)."""
    points = np.array([kinematics.forward_kinematics(q) for q in plan[::every]] + [kinematics.forward_kinematics(plan[-1])])
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def run_episode(robot, backend, goal, seed, params, stop_on_success, tail_s=0.3):
    """One episode: the plan played out; returns (physics success, first frame, last frame, tool path m)."""
    robot.reset(goal, seed)
    backend.source = Fixed(params)
    obs = robot.observe()
    obs.update(session="bench", reset=True)
    first = obs["observation.images.front"]
    chunk = backend.infer([obs])[0]
    plan = backend.episode("bench").plan
    ticks = min(len(plan) + int(tail_s * robot.control_hz), int(robot.max_episode_s * robot.control_hz))
    success = False
    for k in range(ticks):
        if k and k % len(chunk) == 0:
            obs = robot.observe(images=False)
            obs.update(session="bench")
            chunk = backend.infer([obs])[0]
        robot.act(chunk[k % len(chunk)])
        if stop_on_success and robot.success():
            success = True
            break
    last = robot.render("front")
    return success or robot.success(), first, last, path_length(plan, backend.desc.kinematics)


def to_params(space, x):
    return {p.name: p.low + float(np.clip(v, 0, 1)) * (p.high - p.low) for p, v in zip(space, x)}


def heldout(robot, backend, goal, params, n, seed0=900000):
    return sum(run_episode(robot, backend, goal, seed0 + i, params, True)[0] for i in range(n))


def search(robot, backend, rewarder, task, goal, budget, layouts, seed, log, effort=EFFORT_PER_M):
    import cma

    from vla_primitives import parameter_space

    space = parameter_space(goal)
    x0 = [(p.init - p.low) / (p.high - p.low) for p in space]
    es = cma.CMAEvolutionStrategy(x0, 0.25, {"bounds": [0, 1], "seed": seed + 1, "verbose": -9})
    rng = np.random.default_rng(seed)
    episodes, reached, gen = 0, None, 0
    cpu0 = time.process_time()
    means: list[tuple[float, list[float]]] = []  # (the generation's mean fitness, the search mean after it)
    while episodes + es.popsize * layouts <= budget:
        xs = es.ask()
        seeds = [int(s) for s in rng.integers(0, 800000, layouts)]
        fitness, approvals = [], 0
        for x in xs:
            params = to_params(space, x)
            total = 0.0
            for s in seeds:
                _, first, last, path_m = run_episode(robot, backend, goal, s, params, False)
                score = rewarder.score([first, last], goal)
                approvals += int(score.success)
                total += score.score - effort * path_m
                episodes += 1
            fitness.append(-total / layouts)
        es.tell(xs, fitness)
        means.append((float(np.mean(fitness)), list(es.mean)))
        gen += 1
        rate = approvals / (len(xs) * layouts)
        if reached is None and rate >= 0.8:
            reached = episodes
        log(f"  {task} gen {gen:3d} episodes {episodes:4d} rewarder-approved {rate:4.0%} best fitness {-min(fitness):.3f}")
    # The choice, as the issue asks: the final mean and the means after the best three generations,
    # each scored by the rewarder on the same validation layouts (seeds 800000+, never held out).
    picks = [list(es.mean)] + [m for _, m in sorted(means, key=lambda fm: fm[0])[:3]]
    best, best_score = None, -math.inf
    for x in picks:
        params = to_params(space, x)
        total = 0.0
        for i in range(VALIDATION):
            _, first, last, path_m = run_episode(robot, backend, goal, 800000 + i, params, False)
            total += rewarder.score([first, last], goal).score - effort * path_m
            episodes += 1
        log(f"  {task} validation of a candidate: {total / VALIDATION:.3f}")
        if total > best_score:
            best, best_score = params, total
    return best, episodes, time.process_time() - cpu0, reached


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", action="append", choices=list(TASKS), help="default: all three")
    ap.add_argument("--budget", type=int, default=600, help="episodes of search per task")
    ap.add_argument("--layouts", type=int, default=2, help="layouts per generation (every candidate runs each)")
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--target", type=int, default=95, help="held-out successes per 100 for PASS")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--effort", type=float, default=EFFORT_PER_M, help="fitness lost per metre of tool path")
    ap.add_argument("--out", type=Path, default=None, help="write the learned params here (JSON list, one per task)")
    ap.add_argument("--sim", default="{}", help="extra SimConfig settings as JSON, e.g. '{\"distractor\": true}'")
    ap.add_argument("--params", type=Path, default=None,
                    help="skip the search: judge these learned params (a file --out wrote) on the held-out layouts")
    args = ap.parse_args(argv)

    from vla_heuristic.rewarder import HeuristicRewarder
    from vla_primitives.backend import PrimitivesBackend
    from vla_primitives.config import PrimitivesConfig
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig(cameras=["front"], **json.loads(args.sim)))
    robot.reset("lift", 0)
    tmp = Path(tempfile.mkdtemp(prefix="prims-bench-"))
    cal = truth_calibration(robot, tmp / "camera-front.yaml")
    backend = PrimitivesBackend(PrimitivesConfig(calibration=str(cal), robot="sim"))
    rewarder = HeuristicRewarder()
    results, learned = {}, []
    for task in args.task or list(TASKS):
        goal = TASKS[task]
        from vla_primitives import parameter_space

        if args.params:
            given = {e["task"]: e["params"] for e in json.loads(args.params.read_text())}
            if goal not in given:
                print(f"{task}: not in {args.params}", flush=True)
                continue
            t0 = time.process_time()
            ok = heldout(robot, backend, goal, given[goal], args.heldout)
            results[task] = ok
            print(f"{task}: learned params from {args.params}, held-out physics {ok}/{args.heldout} "
                  f"({(time.process_time() - t0) / args.heldout * 1000:.0f} ms/episode)", flush=True)
            continue
        init = {p.name: p.init for p in parameter_space(goal)}
        n_init = min(20, args.heldout)
        init_ok = heldout(robot, backend, goal, init, n_init)
        params, episodes, cpu_s, reached = search(robot, backend, rewarder, task, goal, args.budget, args.layouts,
                                                  args.seed, lambda line: print(line, flush=True), args.effort)
        t0 = time.process_time()
        ok = heldout(robot, backend, goal, params, args.heldout)
        eval_cpu = time.process_time() - t0
        results[task] = ok
        learned.append({"task": goal, "params": {k: round(v, 5) for k, v in params.items()}})
        print(f"{task}: initial params {init_ok}/{n_init} held-out; search {episodes} episodes, {cpu_s / 60:.1f} CPU-min "
              f"({cpu_s / max(episodes, 1) * 1000:.0f} ms/episode); 80% rewarder-approved by episode "
              f"{reached if reached is not None else 'never'}; held-out physics {ok}/{args.heldout} "
              f"({eval_cpu / args.heldout * 1000:.0f} ms/episode)", flush=True)
        print(f"  params {json.dumps(learned[-1]['params'])}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(learned, indent=1))
    need = math.ceil(args.target * args.heldout / 100)
    verdict = bool(results) and all(v >= need for v in results.values())
    print(("PASS" if verdict else "FAIL") + ": held-out physics " +
          ", ".join(f"{t} {v}/{args.heldout}" for t, v in results.items()) + f" (target {need}/{args.heldout} each)")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
