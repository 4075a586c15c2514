"""The lab plan's gates, judged from what vla recorded (see /work/shared/seeds, section 10).

- G0: every arm in vla.yaml calibrated (its robot's ``calibration_status()``), its safety file
  valid for its robot, and its joint limits inside the robot's own ranges (the description's).
- G1: closed loop at >= ``min_control_hz`` with queue underflows < ``max_underflows_per_min``
  after start-up, on every arm that has run for at least ``min_minutes`` of real time.
- G2: one task at >= ``first_task_rate`` over >= ``first_task_trials`` trials of one checkpoint.
- G3: ``tasks_needed`` tasks at >= ``tasks_rate`` over >= ``tasks_trials`` trials each, of one
  checkpoint, and a rewarder that agrees with the human labels >= ``agreement`` of the time on
  >= ``agreement_clips`` clips.
- Latency KPI: median observe-to-action <= ``max_latency_ms``.

A gate without evidence fails and says what is missing. Every rate judged comes with its 95%
Wilson interval: success and agreement rates directly; underflows per minute as the per-tick
underflow share's interval times the ticks per minute; the latency KPI as the share of
chunks within the limit. The verdict uses the point estimate, as the plan states its gates.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs

from vla.evaluation.metrics import wilson_interval
from vla.lab.records import Found, checkpoint_of, median, percentile

GATE_NAMES = ("G0", "G1", "G2", "G3", "latency")


@attrs.define
class Gate:
    name: str
    title: str
    passed: bool
    summary: str
    evidence: list[str] = attrs.field(factory=list)
    figures: dict[str, Any] = attrs.field(factory=dict)

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "fail"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _ci(n: int, c: int) -> str:
    lo, hi = wilson_interval(n, c)
    return f"95% CI {_pct(lo)}-{_pct(hi)}"


# ---------------------------------------------------------------------- G0


def gate_g0(loaded) -> Gate:
    from vla.client.setup import SetupError, build_robot

    title = "every arm calibrated, safety files valid, limits within the robot's own"
    arms = list(loaded.config.arms)
    if not arms:
        return Gate("G0", title, False, f"no arms listed in {loaded.path or 'vla.yaml'}")
    evidence, bad = [], []
    for arm_id in arms:
        try:
            setup = build_robot(loaded, None, arm_id)
        except SetupError as exc:
            bad.append(arm_id)
            evidence.append(f"{arm_id}: {exc}")
            continue
        problems = []
        status_fn = getattr(setup.robot, "calibration_status", None)
        if not callable(status_fn):
            problems.append(f"robot {setup.robot_name!r} cannot say whether it is calibrated (no calibration_status())")
            calibration = "unknown"
        else:
            status = status_fn()
            calibration = status.detail
            if not status.calibrated:
                problems.append(f"not calibrated: {status.detail}")
        problems += _limits_outside(setup)
        if problems:
            bad.append(arm_id)
            evidence.append(f"{arm_id}: " + "; ".join(problems))
        else:
            evidence.append(f"{arm_id}: calibrated ({calibration}); safety {setup.safety_source} within the "
                            f"{setup.description.name} ranges")
    passed = not bad
    summary = f"{len(arms) - len(bad)} of {len(arms)} arms ready" + ("" if passed else f"; not: {', '.join(bad)}")
    return Gate("G0", title, passed, summary, evidence, {"arms": len(arms), "failing": bad})


def _limits_outside(setup) -> list[str]:
    d = setup.description
    if d is None:
        return [f"robot {setup.robot_name!r} has no description to check the safety limits against"]
    s = setup.safety
    out = []
    tol = 1e-6
    for i, name in enumerate(s.joint_names):
        lo, hi = float(s.lower[i]), float(s.upper[i])
        own_lo, own_hi = float(d.lower[i]), float(d.upper[i])
        if lo < own_lo - tol or hi > own_hi + tol:
            out.append(f"{name} limits [{lo:.3f}, {hi:.3f}] rad go beyond the robot's own [{own_lo:.3f}, {own_hi:.3f}]")
    return out


# ---------------------------------------------------------------------- G1


def gate_g1(found: Found, cfg) -> Gate:
    title = (f"closed loop >= {cfg.min_control_hz:g} Hz, queue underflow < {cfg.max_underflows_per_min:g}/min "
             f"after start-up")
    by_arm: dict[str, list] = defaultdict(list)
    for run in found.runs:
        if run.clock == "real":
            by_arm[run.label].append(run)
    if not by_arm:
        return Gate("G1", title, False, "no real-time tick logs found (run `vla run` or `vla fleet run` first)")
    evidence, failing, figures = [], [], {}
    for label in sorted(by_arm):
        runs = by_arm[label]
        ticks = sum(r.ticks for r in runs)
        seconds = sum(r.seconds for r in runs)
        underflows = sum(r.underflows for r in runs)
        minutes = seconds / 60.0
        if ticks == 0 or seconds <= 0:
            failing.append(label)
            evidence.append(f"{label}: no ticks after the first {cfg.startup_s:g} s of start-up")
            continue
        hz = ticks / seconds
        per_min = underflows / minutes
        lo, hi = wilson_interval(ticks, underflows)
        ticks_per_min = ticks / minutes
        ok = hz >= cfg.min_control_hz and per_min < cfg.max_underflows_per_min and minutes >= cfg.min_minutes
        if not ok:
            failing.append(label)
        why = []
        if hz < cfg.min_control_hz:
            why.append(f"below {cfg.min_control_hz:g} Hz")
        if per_min >= cfg.max_underflows_per_min:
            why.append(f"underflows at {per_min:.2f}/min")
        if minutes < cfg.min_minutes:
            why.append(f"only {minutes:.1f} min of evidence (needs {cfg.min_minutes:g})")
        evidence.append(
            f"{label}: {hz:.1f} Hz over {minutes:.1f} min in {len(runs)} run(s), {underflows} underflows = "
            f"{per_min:.2f}/min (95% CI {lo * ticks_per_min:.2f}-{hi * ticks_per_min:.2f}/min)"
            + (f" -> {', '.join(why)}" if why else ""))
        figures[label] = {"control_hz": round(hz, 3), "minutes": round(minutes, 3), "underflows": underflows,
                          "underflows_per_min": round(per_min, 4),
                          "underflows_per_min_ci95": [round(lo * ticks_per_min, 4), round(hi * ticks_per_min, 4)]}
    passed = not failing
    summary = f"{len(by_arm) - len(failing)} of {len(by_arm)} arms stable" + ("" if passed else f"; not: {', '.join(failing)}")
    return Gate("G1", title, passed, summary, evidence, figures)


# ------------------------------------------------------------------ G2, G3


def task_totals(found: Found) -> dict[str, dict[str, tuple[int, int]]]:
    """checkpoint -> task -> (episodes, successes), summed over every results file of that checkpoint."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for path, results in found.evals:
        cp = checkpoint_of(results, path)
        for task, r in results["tasks"].items():
            out[cp][task][0] += int(r.get("episodes") or 0)
            out[cp][task][1] += int(r.get("successes") or 0)
    return {cp: {t: (n, c) for t, (n, c) in tasks.items()} for cp, tasks in out.items()}


def _task_line(cp: str, task: str, n: int, c: int) -> str:
    rate = c / n if n else 0.0
    return f"{cp} / {task}: {c}/{n} = {_pct(rate)} ({_ci(n, c)})"


def gate_g2(found: Found, cfg) -> Gate:
    title = f"a task at >= {_pct(cfg.first_task_rate)} over >= {cfg.first_task_trials} trials"
    totals = task_totals(found)
    if not totals:
        return Gate("G2", title, False, "no `vla eval` results found")
    rows = [(cp, t, n, c) for cp, tasks in totals.items() for t, (n, c) in tasks.items()]
    rows.sort(key=lambda r: (r[3] / r[2] if r[2] else 0.0, r[2]), reverse=True)
    passing = [r for r in rows if r[2] >= cfg.first_task_trials and r[3] / r[2] >= cfg.first_task_rate]
    evidence = [_task_line(*r) + ("" if r[2] >= cfg.first_task_trials else f" (fewer than {cfg.first_task_trials} trials)")
                for r in rows]
    if passing:
        cp, t, n, c = passing[0]
        summary = f"{t} at {_pct(c / n)} over {n} trials ({cp})"
    else:
        summary = "no task reaches it yet; best " + _task_line(*rows[0])
    lo_hi = {f"{cp}/{t}": {"episodes": n, "successes": c, "ci95": list(wilson_interval(n, c))} for cp, t, n, c in rows}
    return Gate("G2", title, bool(passing), summary, evidence, lo_hi)


def gate_g3(found: Found, cfg) -> Gate:
    title = (f"{cfg.tasks_needed} tasks at >= {_pct(cfg.tasks_rate)} over >= {cfg.tasks_trials} trials; rewarder-human "
             f"agreement >= {_pct(cfg.agreement)} on >= {cfg.agreement_clips} clips")
    totals = task_totals(found)
    evidence, best_cp, best_tasks = [], None, []
    for cp, tasks in totals.items():
        good = sorted(t for t, (n, c) in tasks.items() if n >= cfg.tasks_trials and c / n >= cfg.tasks_rate)
        for t, (n, c) in sorted(tasks.items()):
            evidence.append(_task_line(cp, t, n, c) + (" ok" if t in good else ""))
        if len(good) > len(best_tasks):
            best_cp, best_tasks = cp, good
    tasks_ok = len(best_tasks) >= cfg.tasks_needed
    agreement_ok, agreement_text, agreement_fig = False, "no rewarder calibration report found", {}
    for path, report in found.calibrations:
        n = int(report.get("n_scored") or 0)
        at = report.get("at_threshold") or {}
        a = at.get("agreement")
        if a is None:
            evidence.append(f"rewarder {report.get('rewarder')} ({path}): no agreement (nothing scored)")
            continue
        c = int(round(a * n))
        ok = n >= cfg.agreement_clips and a >= cfg.agreement
        line = f"rewarder {report.get('rewarder')}: agreement {_pct(a)} on {n} clips ({_ci(n, c)})"
        evidence.append(line + (" ok" if ok else "") + f" [{path}]")
        agreement_fig[str(path)] = {"rewarder": report.get("rewarder"), "clips": n, "agreement": a,
                                    "ci95": list(wilson_interval(n, c))}
        if ok and not agreement_ok:
            agreement_ok, agreement_text = True, line
        elif not agreement_ok:
            agreement_text = line + (f" (needs {cfg.agreement_clips} clips)" if n < cfg.agreement_clips else "")
    if not totals:
        task_text = "no `vla eval` results found"
    else:
        task_text = f"{len(best_tasks)} of {cfg.tasks_needed} tasks" + (f" ({best_cp}: {', '.join(best_tasks)})" if best_tasks else "")
    passed = tasks_ok and agreement_ok
    return Gate("G3", title, passed, f"{task_text}; {agreement_text}", evidence,
                {"checkpoint": best_cp, "tasks": best_tasks, "agreement": agreement_fig})


# ----------------------------------------------------------------- latency


def gate_latency(found: Found, cfg) -> Gate:
    title = f"observe-to-action median <= {cfg.max_latency_ms:g} ms"
    runs = [r for r in found.runs if r.clock == "real"]
    samples = [x for r in runs for x in r.latencies_ms]
    if not samples:
        return Gate("latency", title, False, "no chunks in real-time tick logs")
    med = median(samples)
    within = sum(1 for x in samples if x <= cfg.max_latency_ms)
    rtts = [x for r in runs for x in r.rtts_ms]
    evidence = [f"{len(samples)} chunks in {len(runs)} run(s): median {med:.0f} ms, 90th percentile "
                f"{percentile(samples, 90):.0f} ms; {_pct(within / len(samples))} within {cfg.max_latency_ms:g} ms "
                f"({_ci(len(samples), within)})",
                f"round trip to the policy server: median {median(rtts):.0f} ms" if rtts else "no round trips logged",
                "observe-to-action: from the tick whose observation a request carried to the tick that executed "
                "the reply's first action"]
    by_arm: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        by_arm[r.label].extend(r.latencies_ms)
    evidence += [f"{label}: median {median(v):.0f} ms over {len(v)} chunks" for label, v in sorted(by_arm.items()) if v]
    figures = {"chunks": len(samples), "median_ms": med, "p90_ms": percentile(samples, 90),
               "within": within, "within_ci95": list(wilson_interval(len(samples), within))}
    return Gate("latency", title, med <= cfg.max_latency_ms, f"median {med:.0f} ms over {len(samples)} chunks",
                evidence, figures)


def judge(loaded, folder: Path | None = None) -> tuple[list[Gate], Found]:
    from vla.lab.records import find

    cfg = loaded.config.gates
    found = find(folder or loaded.base_dir, cfg.startup_s)
    gates = [gate_g0(loaded), gate_g1(found, cfg), gate_g2(found, cfg), gate_g3(found, cfg), gate_latency(found, cfg)]
    return gates, found
