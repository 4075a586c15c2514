"""What a `vla learn` run reports: when it reached a success rate, and its learning curve (PNG).

The curve shows, against episodes, the share of each round's episodes the rewarder judged a
success (what the learner saw), the share the simulator's physics judged a success (from the
audit log, which the learner never reads), and the rewarder's success on the held-out
selection layouts at each check.
"""

from __future__ import annotations

from pathlib import Path


def reached(selections: list[dict], rate: float) -> dict | None:
    """The first selection check at or above ``rate``: its episodes, CPU and wall seconds."""
    for check in selections:
        if check["rewarder_success"] >= rate:
            return {"rate": rate, "episodes": check["episodes"], "cpu_s": check["cpu_s"], "wall_s": check["wall_s"],
                    "generation": check["generation"]}
    return None


def audited_by_round(audit_path: Path) -> dict[int, float]:
    """Round -> share of its training episodes that the simulator judged a success. A round
    redone after a resume keeps its last run of each job."""
    from vla.learning.loop import read_audit

    last: dict[str, dict] = {}
    for line in read_audit(audit_path):
        if line.get("phase") == "train" and isinstance(line.get("job"), str):
            last[line["job"]] = line
    rounds: dict[int, list[bool]] = {}
    for job, line in last.items():
        g = int(job.split(":", 1)[0][1:])
        if line.get("sim_success") is not None:
            rounds.setdefault(g, []).append(bool(line["sim_success"]))
    return {g: sum(v) / len(v) for g, v in rounds.items() if v}


def plot_curve(state: dict, audit_path: Path, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = state["curve"]
    audited = audited_by_round(audit_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    xs = [p["episodes"] for p in curve]
    ax.plot(xs, [p["rewarder_success"] for p in curve], "-o", ms=3, label="rewarder success (training rounds)")
    # round g (0-based) is curve[g]: the audit's rounds are keyed the same way
    pts = [(curve[g]["episodes"], rate) for g, rate in sorted(audited.items()) if g < len(curve)]
    if pts:
        ax.plot(*zip(*pts), "-s", ms=3, alpha=0.8, label="simulator success (audit only)")
    sel = state.get("selections") or []
    if sel:
        ax.plot([c["episodes"] for c in sel], [c["rewarder_success"] for c in sel], "D", ms=5,
                label="rewarder success, held-out selection layouts")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("episodes")
    ax.set_ylabel("success")
    ax.set_title(f"vla learn: {state.get('goal') or state.get('task')}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
