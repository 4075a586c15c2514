"""The `vla learn` loop: candidates out to the arms, rewarder replies in, a checkpoint per round.

One run, in order:

1. start the policy server (in this process, so the learner can set each episode's parameters
   through a ``ParameterSource``), the rewarder service (unless a URL is given) and one process
   per arm (``vla.learning.arm``);
2. rounds: the trainer proposes a round's candidates, the loop draws fresh layouts (seeds) for
   the round and runs every candidate on each of them, spread over the arms; each episode's
   rewarder reply becomes an ``EpisodeOutcome``; when the round is complete the trainer updates
   and the checkpoint is replaced atomically;
3. every few rounds the trainer's current best guess runs on fixed held-out *selection*
   layouts, scored by the rewarder; the final parameters are the best of these (rewarder
   success, then mean score) - chosen without the simulator's check;
4. the chosen parameters run on held-out *test* layouts, judged by the rewarder and, through the
   audit log, by the simulator's physics (evaluation only); `vla eval`'s summary is written
   beside ``result.json`` and the learning curve.

Seeds: training layouts are drawn from [0, 2e9); selection layouts are 2_000_000_000 + i and
test layouts 2_100_000_000 + i, so the three never overlap.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import resource
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np

from vla.atomicfile import write_atomic
from vla.learning.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla.learning.contract import EpisodeOutcome, LearningError, parameter_space
from vla.learning.fleet import ArmProcess, check_episode_message
from vla.learning.source import ParameterSource

SELECTION_SEED0 = 2_000_000_000
TEST_SEED0 = 2_100_000_000
TRAIN_SEED_MAX = 2_000_000_000
# How long the learner waits for any arm's report before it calls the run hung. A dead arm says so
# at once (its exit); this is for an arm alive but stuck. Recording renders every tick and encodes
# video at each episode's end: on a loaded machine that can take minutes per episode.
EVENT_TIMEOUT_S = 900.0
RECORDING_TIMEOUT_S = 3600.0


@attrs.define
class LearnSettings:
    task: str
    robot: str | None
    arms: list[str]
    out: Path
    budget: int
    clock: str = "simulated"
    arm_files: dict[str, str] = attrs.field(factory=dict)
    config_path: str | None = None
    seed: int = 0
    trainer: str = "cmaes"
    trainer_overrides: dict = attrs.field(factory=dict)
    policy: str = "primitives"
    policy_overrides: dict = attrs.field(factory=dict)
    rewarder: str | None = "heuristic"
    rewarder_url: str | None = None
    rewarder_noise: tuple[str, float] | None = None
    selection_layouts: int = 10
    select_every: int = 3  # rounds between two checks on the selection layouts
    stop_at: float | None = None  # stop when a selection check reaches this rewarder success
    heldout: int = 100
    record_dir: str | None = None
    episode_s: float | None = None
    resume: bool = False
    tick_logs: bool = False
    actions_per_chunk: int | None = None  # None: the policy's whole chunk


@attrs.define
class _Job:
    job: str
    seed: int | None
    params: dict[str, float]
    phase: str
    candidate_id: str | None = None


class CpuMeter:
    """CPU seconds of this process and its arm processes, live or exited (Linux /proc for live ones)."""

    def __init__(self):
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._pids: list[int] = []

    def watch(self, pid: int) -> None:
        self._pids.append(pid)

    def seconds(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime + done.ru_utime + done.ru_stime
        for pid in self._pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime of a live child
            except (OSError, IndexError, ValueError):
                pass  # exited: counted in RUSAGE_CHILDREN once waited
        return total


def learnable_policy(spec, backend):
    """(parameter_space(task_text), attach(source)) of a learnable policy plugin: offered by its
    backend object or, by name, by its top-level package (``vla_primitives.parameter_space``)."""
    package = importlib.import_module(spec.factory.partition(":")[0].split(".")[0])
    space = getattr(backend, "parameter_space", None) or getattr(package, "parameter_space", None)
    attach = getattr(backend, "set_parameter_source", None)
    if attach is None and callable(getattr(package, "set_parameter_source", None)):
        def attach(source, _set=package.set_parameter_source):
            _set(backend, source)
    if not callable(space) or not callable(attach):
        raise LearningError(f"policy {spec.name!r} cannot be learned: it offers no parameter_space(task) and "
                            "set_parameter_source(source) (see vla.learning.contract)")
    return space, attach


class LearnRun:
    def __init__(self, settings: LearnSettings, progress: Callable[[str, dict], None] | None = None,
                 operator=None, t0: float | None = None):
        self.s = settings
        self.out = Path(settings.out)
        self.progress = progress or (lambda kind, info: None)
        self.operator = operator
        self.events: queue.Queue = queue.Queue()
        self.arms: dict[str, ArmProcess] = {}
        self.source = ParameterSource()
        self.cpu = CpuMeter()
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.goal: str | None = None
        self._services: list = []
        self._t0 = time.monotonic() if t0 is None else t0  # wall time from the command's start
        self._cpu0 = 0.0
        self._learner_log = None
        self.state: dict[str, Any] = {}
        self.trainer = None
        self._event_timeout = RECORDING_TIMEOUT_S if settings.record_dir else EVENT_TIMEOUT_S

    # ================================================================ paths

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.json"

    @property
    def audit_path(self) -> Path:
        return self.out / "audit.jsonl"

    def session_of(self, arm: str) -> str:
        # what the arm's controller names its session (SessionRunner: "<kind>-<run id>")
        return f"learn-{self.run_id}-{arm}"

    # ================================================================ run

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        saved = None
        if self.s.resume:
            try:
                saved = load_checkpoint(self.checkpoint_path)
            except CheckpointError as exc:
                raise LearningError(str(exc)) from None
            if saved[0].get("phase") == "done" and (self.out / "result.json").exists():
                self.progress("status", {"text": f"the run in {self.out} is finished; nothing to resume"})
                return json.loads((self.out / "result.json").read_text())
        elif self.checkpoint_path.exists():
            raise LearningError(f"{self.out} already holds a run ({self.checkpoint_path.name}); "
                                "pass --resume to continue it, or choose another --out")
        try:
            self._start_services()
            self._start_arms()
            self._build_trainer(saved)
            self._learn()
            chosen = self._choose()
            heldout = self._heldout(chosen)
            return self._finish(chosen, heldout)
        finally:
            self.close()

    def close(self) -> None:
        for arm in self.arms.values():
            arm.stop()
        self.arms.clear()
        for service in reversed(self._services):
            try:
                service.close()
            except Exception:
                pass
        self._services.clear()
        if self._learner_log is not None:
            self._learner_log.close()
            self._learner_log = None

    # ================================================================ start-up

    def _start_services(self) -> None:
        from vla.config import load_config
        from vla.learning.services import PolicyServerThread, start_rewarder_service
        from vla.plugins import PluginError, UnknownComponent, get_spec
        from vla.service.settings import plugin_settings

        loaded = load_config(self.s.config_path)
        try:
            spec = get_spec("policies", self.s.policy)
        except (UnknownComponent, PluginError) as exc:
            raise LearningError(f"--policy {self.s.policy}: {exc}") from None
        try:
            config = plugin_settings(spec, loaded, self.s.policy_overrides)
            backend = spec.build(config)
        except Exception as exc:
            raise LearningError(f"policy {self.s.policy!r} could not be built: {type(exc).__name__}: {exc}") from None
        self._space_fn, attach = learnable_policy(spec, backend)
        attach(self.source)
        self.progress("status", {"text": f"starting the policy server ({self.s.policy})"})
        server = PolicyServerThread(backend, self.s.policy).start()
        self._services.append(server)
        self.policy_url = server.url
        self.rewarder_api_key = None
        if self.s.rewarder_url:
            self.rewarder_url = self.s.rewarder_url
            self.rewarder_api_key = os.environ.get("VLA_REWARDER_API_KEY") or loaded.config.rewarder.api_key
            self._check_rewarder_url()
        else:
            self.progress("status", {"text": f"starting the rewarder service ({self.s.rewarder})"})
            try:
                running = start_rewarder_service(self.s.rewarder, self.s.config_path, self.s.rewarder_noise,
                                                 seed=self.s.seed)
            except (LookupError, ValueError) as exc:  # unknown plugin, bad settings
                raise LearningError(f"--rewarder {self.s.rewarder}: {exc}") from None
            self._services.append(running)
            self.rewarder_url = running.url

    def _check_rewarder_url(self) -> None:
        from vla.rewarding.client import RewarderClient

        client = RewarderClient(self.rewarder_url, api_key=self.rewarder_api_key, timeout=10.0, retries=1)
        try:
            client.wait_ready(timeout=30.0)
        except (TimeoutError, ConnectionError) as exc:
            raise LearningError(f"the rewarder at {self.rewarder_url} is not ready: {exc}") from None
        except Exception as exc:
            raise LearningError(f"the rewarder at {self.rewarder_url} failed: {exc}") from None
        finally:
            client.close()

    def _start_arms(self) -> None:
        logs = self.out / "logs"
        for arm in self.s.arms:
            spec = {
                "arm": arm, "task": self.s.task, "robot": self.s.robot, "config_path": self.s.config_path,
                "arm_files": self.s.arm_files, "policy_url": self.policy_url, "rewarder_url": self.rewarder_url,
                "run_id": f"{self.run_id}-{arm}", "clock": self.s.clock, "audit_path": str(self.audit_path),
                "record_dir": self.s.record_dir, "episode_s": self.s.episode_s,
                "actions_per_chunk": self.s.actions_per_chunk,
                "log_path": str(logs / f"{arm}.ticks.jsonl") if self.s.tick_logs else None,
            }
            process = ArmProcess(arm, spec, self.events, logs / f"{arm}.stderr.log",
                                 env={"VLA_REWARDER_API_KEY": self.rewarder_api_key} if self.rewarder_api_key else None)
            process.start()
            self.cpu.watch(process.proc.pid)
            self.arms[arm] = process
        self.progress("status", {"text": f"starting {len(self.arms)} arm process(es)"})
        ready: set[str] = set()
        while len(ready) < len(self.arms):
            arm, message = self._next_event(timeout=self._event_timeout)
            kind = message.get("type")
            if kind == "ready":
                ready.add(arm)
                goal = message.get("goal")
                if self.goal is None and isinstance(goal, str) and goal:
                    self.goal = goal
            else:
                self._fail_on(arm, message)

    def _build_trainer(self, saved) -> None:
        from vla.config import load_config
        from vla.plugins import PluginError, UnknownComponent, get_spec
        from vla.service.settings import plugin_settings

        try:
            spec = get_spec("trainers", self.s.trainer)
        except (UnknownComponent, PluginError) as exc:
            raise LearningError(f"--trainer {self.s.trainer}: {exc}") from None
        if getattr(spec, "mode", "offline") != "online":
            raise LearningError(f"trainer {self.s.trainer!r} is an offline trainer (vla train); vla learn needs an online one")
        goal = self.goal or self.s.task
        try:
            self.space = parameter_space(self._space_fn(goal))
        except LearningError:
            raise  # an empty space or repeated names: already says so
        except Exception as exc:
            raise LearningError(f"policy {self.s.policy!r} has no parameter space for {goal!r}: {exc}") from None
        config = plugin_settings(spec, load_config(self.s.config_path), self.s.trainer_overrides)
        self.trainer = spec.build(config, space=self.space, seed=self.s.seed)
        if saved is not None:
            run, trainer_state = saved
            if run.get("task") != self.s.task:
                raise LearningError(f"the checkpoint is a run of task {run.get('task')!r}, not {self.s.task!r}")
            if run.get("budget") != self.s.budget:
                raise LearningError(f"the checkpoint's budget is {run.get('budget')} episodes; resume with "
                                    f"--budget {run.get('budget')}")
            self.trainer.load_state(trainer_state)
            self.state = run
            self.state["resumed"] = int(self.state.get("resumed", 0)) + 1
        else:
            self.state = {
                "task": self.s.task, "goal": goal, "budget": self.s.budget, "seed": self.s.seed,
                "trainer": self.s.trainer, "policy": self.s.policy, "episodes": 0, "cpu_s": 0.0, "wall_s": 0.0,
                "curve": [], "selections": [], "phase": "learn", "space": [attrs.asdict(p) for p in self.space],
                "rewarder": self.s.rewarder_url or self.s.rewarder, "noise": list(self.s.rewarder_noise or []) or None,
            }
        self._cpu0 = 0.0  # this process's CPU from its start: the calibration and start-up count too
        learner_log = self.out / "learner.jsonl"
        if saved is not None:
            _keep_rounds_before(learner_log, self.trainer.generation)
        self._learner_log = learner_log.open("a", buffering=1)

    # ================================================================ episodes on the arms

    def _next_event(self, timeout: float) -> tuple[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            if self.operator is not None:
                self.operator.poll(self)
            try:
                return self.events.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise LearningError(f"no arm reported anything for {timeout:.0f} s") from None

    def _fail_on(self, arm: str, message: dict) -> None:
        kind = message.get("type")
        if kind == "error":
            raise LearningError(f"arm {arm} failed: {message.get('message')}")
        if kind in ("exit", "end"):
            code = message.get("code", message.get("exit_code"))
            tail = self.arms[arm].tail() if arm in self.arms else ""
            raise LearningError(f"arm {arm} exited (code {code}) while the run needed it" + (f":\n{tail}" if tail else ""))
        raise LearningError(f"arm {arm} sent an unexpected {kind!r} message")

    def run_jobs(self, jobs: list[_Job], on_done: Callable[[_Job, dict], None]) -> None:
        """Run ``jobs`` on the arms (each arm one episode at a time); ``on_done(job, message)`` per episode."""
        pending = list(jobs)
        busy: dict[str, _Job] = {}
        self._busy = busy
        while pending or busy:
            for arm in self.arms:
                if arm not in busy and pending and (self.operator is None or not self.operator.paused):
                    job = pending.pop(0)
                    if self.operator is not None and not self.operator.reset_scene(arm, job):
                        pending.insert(0, job)  # paused while asking; try again after the resume
                        continue
                    self.source.assign(self.session_of(arm), job.params)
                    self.arms[arm].send(type="job", job=job.job, seed=job.seed, phase=job.phase)
                    busy[arm] = job
            arm, message = self._next_event(timeout=self._event_timeout)
            kind = message.get("type")
            if kind == "episode" and arm in busy and message.get("job") == busy[arm].job:
                job = busy.pop(arm)
                on_done(job, check_episode_message(message))
            elif kind == "aborted" and arm in busy:
                pending.insert(0, busy.pop(arm))  # an operator's pause: run it again after the resume
            else:
                self._fail_on(arm, message)

    def abort_running(self) -> None:
        """End every running episode now (an operator's pause); each is run again later."""
        for arm, job in list(getattr(self, "_busy", {}).items()):
            self.arms[arm].send(type="abort", job=job.job)

    # ================================================================ learning

    def _elapsed(self) -> tuple[float, float]:
        return (float(self.state["cpu_s"]) + self.cpu.seconds() - self._cpu0,
                float(self.state["wall_s"]) + time.monotonic() - self._t0)

    def _reserve(self) -> int:
        return 2 * self.s.selection_layouts  # the final selection check: the last mean and the best candidate

    def _round_size(self) -> int:
        return self.trainer.popsize * self.trainer.episodes_per_candidate

    def _learn(self) -> None:
        if self.state.get("phase") != "learn":
            return
        self.progress("start", {"budget": self.s.budget, "episodes": self.state["episodes"], "space": self.space,
                                "goal": self.state["goal"], "arms": list(self.arms)})
        while self.state["episodes"] + self._round_size() + self._reserve() <= self.s.budget:
            g = self.trainer.generation
            candidates = []
            while (c := self.trainer.propose()) is not None:
                candidates.append(c)
            rng = np.random.default_rng([self.s.seed, g])
            seeds = [int(s) for s in rng.integers(0, TRAIN_SEED_MAX, self.trainer.episodes_per_candidate)]
            jobs = [_Job(f"g{g}:{c.id}:s{j}", seed, c.params, "train", c.id)
                    for j, seed in enumerate(seeds) for c in candidates]
            replies: list[dict] = []

            def ingest(job: _Job, message: dict) -> None:
                reply = message["reply"]
                outcome = EpisodeOutcome(job.candidate_id, float(reply["score"]), bool(reply["success"]),
                                         float(message["length_s"]), float(message["path_m"]),
                                         int(message["safety_events"]), message["arm"])
                self.trainer.ingest(outcome)
                self._learner_log.write(json.dumps({"generation": g, "job": job.job, **attrs.asdict(outcome)}) + "\n")
                replies.append(reply)
                self.progress("episode", {"episodes": self.state["episodes"] + len(replies)})

            self.run_jobs(jobs, ingest)
            stats = self.trainer.update()
            self.state["episodes"] += len(jobs)
            cpu_s, wall_s = self._elapsed()
            point = {**stats, "episodes": self.state["episodes"],
                     "rewarder_success": sum(r["success"] for r in replies) / len(replies),
                     "mean_score": float(np.mean([r["score"] for r in replies])),
                     "cpu_s": round(cpu_s, 2), "wall_s": round(wall_s, 2)}
            self.state["curve"].append(point)
            self.progress("round", point)
            stop = False
            if self.trainer.generation % self.s.select_every == 0:
                check = self._select_check(f"mean-g{self.trainer.generation}", self.trainer.best())
                stop = self.s.stop_at is not None and check["rewarder_success"] >= self.s.stop_at
            self._checkpoint()
            if stop:
                self.progress("status", {"text": f"stopping: selection check reached {self.s.stop_at:.0%}"})
                break
        self.state["phase"] = "choose"
        self._checkpoint()

    def _select_check(self, name: str, params: dict[str, float]) -> dict:
        """The candidate on the held-out selection layouts, scored by the rewarder only."""
        jobs = [_Job(f"v{self.trainer.generation}:{name}:{i}", SELECTION_SEED0 + i, params, "select")
                for i in range(self.s.selection_layouts)]
        replies: list[dict] = []
        self.run_jobs(jobs, lambda job, message: replies.append(message["reply"]))
        self.state["episodes"] += len(jobs)
        cpu_s, wall_s = self._elapsed()
        check = {"generation": self.trainer.generation, "candidate": name, "params": params,
                 "episodes": self.state["episodes"],
                 "rewarder_success": sum(r["success"] for r in replies) / len(replies),
                 "mean_score": float(np.mean([r["score"] for r in replies])),
                 "cpu_s": round(cpu_s, 2), "wall_s": round(wall_s, 2)}
        self.state["selections"].append(check)
        self.progress("select", check)
        return check

    def _checkpoint(self) -> None:
        cpu_s, wall_s = self._elapsed()
        run = {**self.state, "cpu_s": cpu_s, "wall_s": wall_s}
        save_checkpoint(self.checkpoint_path, run, self.trainer.state())

    # ================================================================ choosing and testing

    def _choose(self) -> dict:
        if self.state.get("phase") == "choose":
            done = {c["candidate"] for c in self.state["selections"]}
            for candidate in self.trainer.shortlist(2):
                room = self.s.budget - self.state["episodes"]
                if candidate.id in done or room < self.s.selection_layouts:
                    continue
                self._select_check(candidate.id, candidate.params)
            self.state["phase"] = "heldout"
            self._checkpoint()
        if not self.state["selections"]:
            raise LearningError("the budget left no episodes to check any candidate on the selection layouts")
        # best rewarder success on the selection layouts, then the best mean score, then the latest
        best = max(enumerate(self.state["selections"]),
                   key=lambda ic: (ic[1]["rewarder_success"], ic[1]["mean_score"], ic[0]))[1]
        return best

    def _heldout(self, chosen: dict) -> dict:
        from vla.evaluation.cli import summarize
        from vla.evaluation.media import plot_success

        self.progress("heldout", {"episodes": self.s.heldout, "candidate": chosen["candidate"]})
        jobs = [_Job(f"h:{chosen['candidate']}:{i}", TEST_SEED0 + i, chosen["params"], "heldout")
                for i in range(self.s.heldout)]
        replies: dict[str, dict] = {}

        def done(job, message):
            replies[job.job] = message
            self.progress("heldout_episode", {"done": len(replies)})

        self.run_jobs(jobs, done)
        # the simulator's own check, for evaluation only: from the audit the arms wrote
        audited = {}
        for line in read_audit(self.audit_path):
            if line.get("phase") == "heldout" and line.get("job") in replies:
                audited[line["job"]] = line.get("sim_success")
        runs = [_EvalRun(seed=j.seed, success=audited.get(j.job), duration_s=replies[j.job]["length_s"])
                for j in jobs]
        heldout_dir = self.out / "heldout"
        heldout_dir.mkdir(exist_ok=True)
        results = summarize({self.s.task: runs}, [1, 5], robot=self.s.robot, url=self.policy_url, merge=None,
                            seed=TEST_SEED0, policy=self.s.policy, interrupted=False)
        results["judge"] = "simulator physics (audit log); the learner never saw it"
        results["rewarder_successes"] = sum(1 for m in replies.values() if m["reply"]["success"])
        (heldout_dir / "results.json").write_text(json.dumps(results, indent=2))
        if any(r.success is not None for r in runs):
            plot_success(results, heldout_dir / "success.png")
        return {
            "episodes": len(jobs),
            "rewarder_successes": results["rewarder_successes"],
            "audited_successes": sum(1 for r in runs if r.success) if any(r.success is not None for r in runs) else None,
            "seeds": [TEST_SEED0, TEST_SEED0 + len(jobs) - 1],
            "results": str(heldout_dir / "results.json"),
        }

    def _finish(self, chosen: dict, heldout: dict) -> dict:
        from vla.learning.report import plot_curve, reached

        cpu_s, wall_s = self._elapsed()
        self.state["phase"] = "done"
        self.state["chosen"] = chosen
        self._checkpoint()
        params_path = self.out / "policy_params.json"
        params_path.write_text(json.dumps({"task": self.state["goal"], "params": chosen["params"]}, indent=2))
        to80 = reached(self.state["selections"], 0.8)
        result = {
            "task": self.s.task,
            "goal": self.state["goal"],
            "episodes": int(self.state["episodes"]),
            "cpu_s": round(cpu_s, 2),
            "wall_s": round(wall_s, 2),
            "heldout": heldout,
            "checkpoint": str(self.checkpoint_path),
            "params": str(params_path),
            "chosen": {k: chosen[k] for k in ("candidate", "generation", "rewarder_success", "mean_score", "params")},
            "reached_80": to80,
            "arms": len(self.s.arms),
            "robot": self.s.robot,
            "rewarder": self.state["rewarder"],
            "rewarder_noise": self.state.get("noise"),
            "trainer": self.s.trainer,
            "policy": self.s.policy,
            "generations": self.trainer.generation,
            "resumed": int(self.state.get("resumed", 0)),
        }
        result["curve_png"] = str(plot_curve(self.state, self.audit_path, self.out / "learning_curve.png"))
        (self.out / "result.json").write_text(json.dumps(result, indent=2))
        return result


@attrs.frozen
class _EvalRun:
    """One held-out episode in the shape `vla eval`'s summary reads."""

    seed: int
    success: bool | None
    duration_s: float
    interrupted: bool = False
    counts: dict = attrs.field(factory=dict)
    info: dict = attrs.field(factory=dict)


def read_audit(path: Path):
    try:
        with Path(path).open() as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
    except FileNotFoundError:
        return


def _keep_rounds_before(log: Path, generation: int) -> None:
    """Drop from the learner's log the episodes of rounds the checkpoint had not taken in (a killed run's
    last round, which a resumed run plays again), so that the log holds what the learner learned from."""
    if not log.exists():
        return
    kept = []
    for line in log.read_text().splitlines(keepends=True):
        try:
            if json.loads(line).get("generation", generation) < generation:
                kept.append(line if line.endswith("\n") else line + "\n")
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
    write_atomic(log, "".join(kept))
