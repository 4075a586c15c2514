"""Plots for calibration and A/B reports (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vla.rewarding.calibration import ClipScore, roc_auc, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _arrays(results: Sequence[ClipScore]) -> tuple[np.ndarray, np.ndarray]:
    ok = [r for r in results if r.score is not None]
    return np.array([r.score for r in ok], float), np.array([r.label for r in ok], bool)


def _roc(ax, scores, labels, label: str, chosen: float | None = None, color=None) -> None:
    if len(scores) == 0 or labels.all() or not labels.any():
        ax.text(0.5, 0.5, "ROC needs both labels", ha="center", transform=ax.transAxes)
        return
    fpr, tpr, thresholds = roc_curve(scores, labels)
    auc = roc_auc(scores, labels)
    (line,) = ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{label} (AUC {auc:.3f})", color=color)
    if chosen is not None:
        pred = scores >= chosen
        x = np.sum(pred & ~labels) / max((~labels).sum(), 1)
        y = np.sum(pred & labels) / max(labels.sum(), 1)
        ax.plot([x], [y], "o", color=line.get_color())
        ax.annotate(f"t={chosen:.3f}", (x, y), textcoords="offset points", xytext=(6, -12))
    ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="lower right")


def _histograms(ax, scores, labels, threshold: float, chosen: float | None, title: str) -> None:
    bins = np.linspace(0, 1, 21)
    ax.hist(scores[labels], bins=bins, alpha=0.6, label=f"labelled success ({labels.sum()})", color="tab:green")
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label=f"labelled failure ({(~labels).sum()})", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    if chosen is not None and abs(chosen - threshold) > 1e-9:
        ax.axvline(chosen, color="tab:blue", linestyle="-", label=f"chosen {chosen:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend(fontsize="small")


def plot_calibration(results: Sequence[ClipScore], summary: dict, name: str, path: str | Path) -> Path:
    """ROC curve, and score histograms per label (all tasks, then one panel per task)."""
    plt = _pyplot()
    scores, labels = _arrays(results)
    tasks = sorted(summary.get("per_task", {}))
    ncols = 2 + len(tasks)
    fig, axes = plt.subplots(1, ncols, figsize=(4.5 * ncols, 4.2))
    chosen = summary.get("chosen_threshold")
    _roc(axes[0], scores, labels, name, chosen)
    axes[0].set_title(f"{name}: ROC")
    _histograms(axes[1], scores, labels, summary["threshold"], chosen, "all tasks")
    for ax, task in zip(axes[2:], tasks):
        mask = np.array([r.task == task for r in results if r.score is not None])
        _histograms(ax, scores[mask], labels[mask], summary["threshold"], chosen, task)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_ab(results_a: Sequence[ClipScore], results_b: Sequence[ClipScore], name_a: str, name_b: str,
            summary_a: dict, summary_b: dict, path: str | Path) -> Path:
    """Both ROC curves on one axes, and each clip's score under A against B, coloured by label."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    sa, la = _arrays(results_a)
    sb, lb = _arrays(results_b)
    _roc(axes[0], sa, la, name_a, summary_a.get("chosen_threshold"), "tab:blue")
    _roc(axes[0], sb, lb, name_b, summary_b.get("chosen_threshold"), "tab:orange")
    axes[0].set_title("ROC")
    by_id_b = {r.id: r for r in results_b}
    pairs = [(r, by_id_b.get(r.id)) for r in results_a]
    pairs = [(a, b) for a, b in pairs if b is not None and a.score is not None and b.score is not None]
    xs = np.array([a.score for a, _ in pairs])
    ys = np.array([b.score for _, b in pairs])
    lab = np.array([a.label for a, _ in pairs], bool)
    if len(pairs):
        axes[1].scatter(xs[lab], ys[lab], c="tab:green", label="labelled success", s=14)
        axes[1].scatter(xs[~lab], ys[~lab], c="tab:red", label="labelled failure", s=14, marker="x")
    axes[1].axvline(summary_a["threshold"], color="tab:blue", linestyle="--", linewidth=0.8)
    axes[1].axhline(summary_b["threshold"], color="tab:orange", linestyle="--", linewidth=0.8)
    axes[1].set_xlabel(f"{name_a} score")
    axes[1].set_ylabel(f"{name_b} score")
    axes[1].set_xlim(-0.02, 1.02)
    axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("per clip")
    axes[1].legend(fontsize="small")
    tasks = sorted(set(summary_a.get("per_task", {})) | set(summary_b.get("per_task", {})))
    width = 0.38
    x = np.arange(len(tasks) + 1)
    def agreements(summary):
        per = summary.get("per_task", {})
        values = [((per.get(t) or {}).get("at_threshold") or {}).get("agreement") or 0.0 for t in tasks]
        overall = (summary.get("at_threshold") or {}).get("agreement") or 0.0
        return values + [overall]
    axes[2].bar(x - width / 2, agreements(summary_a), width, label=name_a, color="tab:blue")
    axes[2].bar(x + width / 2, agreements(summary_b), width, label=name_b, color="tab:orange")
    axes[2].axhline(0.9, color="grey", linestyle=":", label="90% target")
    axes[2].set_xticks(x, tasks + ["all"], rotation=20)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_ylabel("agreement with labels")
    axes[2].set_title("agreement at each rewarder's threshold")
    axes[2].legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
