"""Measuring a rewarder against labelled clips: agreement, precision, recall, ROC-AUC, a threshold.

Pure numpy; the plots live in vla.rewarding.report. A clip counts as predicted successful
when its score is at or above the threshold (the same rule the service applies).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import attrs
import numpy as np

from vla.rewarding.labels import Clip

CRITERIA = ("agreement", "youden")


@attrs.frozen
class ClipScore:
    id: str
    task: str
    label: bool
    score: float | None  # None when the rewarder failed on this clip
    error: str | None = None
    seconds: float = 0.0
    # What the score's details say when the model behind it is a test model (random weights,
    # e.g. the qwen-vl cpu profile): the numbers then mean nothing, and the report says so.
    test_model: str | None = None


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    tn = int(np.sum(~predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    n = tp + fp + tn + fn
    return {
        "threshold": float(threshold),
        "n": n,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "agreement": (tp + tn) / n if n else None,
        # precision is undefined when nothing is predicted successful; report None, not 0
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds falling from +inf."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = labels.sum(), (~labels).sum()
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    tpr = np.array([np.sum((scores >= t) & labels) for t in thresholds]) / max(pos, 1)
    fpr = np.array([np.sum((scores >= t) & ~labels) for t in thresholds]) / max(neg, 1)
    return fpr, tpr, thresholds


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Probability that a random success outscores a random failure (ties count half). None
    when the clips hold only one class."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Midpoints between neighbouring distinct scores, plus one below and one above all of them."""
    unique = np.unique(np.asarray(scores, float))
    mids = (unique[:-1] + unique[1:]) / 2 if len(unique) > 1 else np.array([])
    return np.clip(np.concatenate([[unique[0] - 1e-6], mids, [unique[-1] + 1e-6]]), 0.0, 1.0 + 1e-6)


def choose_threshold(
    scores: np.ndarray, labels: np.ndarray, criterion: str = "agreement", prefer: float = 0.5
) -> float:
    """The threshold maximising agreement or Youden's J (TPR - FPR); ties go to the one nearest
    ``prefer`` (the rewarder's current threshold), so a good threshold is not moved for nothing."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    best, best_key = prefer, None
    # the current threshold is a candidate too: when it is already as good as any, it stays
    for t in np.append(candidate_thresholds(scores), prefer):
        c = confusion(scores, labels, t)
        if criterion == "agreement":
            value = c["agreement"]
        else:
            tpr = c["tp"] / max(c["tp"] + c["fn"], 1)
            fpr = c["fp"] / max(c["fp"] + c["tn"], 1)
            value = tpr - fpr
        key = (round(value, 12), -abs(t - prefer))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


def score_clips(
    rewarder: Any,
    clips: Sequence[Clip],
    progress: Callable[[Clip], None] | None = None,
) -> list[ClipScore]:
    """Score every clip with the whole clip (oldest frame first) and its goal; a failure on one
    clip is recorded, not raised, so one bad clip does not lose a long run."""
    results = []
    for clip in clips:
        start = time.perf_counter()
        try:
            frames = clip.load_frames()
            scored = rewarder.score(frames, clip.goal)
            test_model = (getattr(scored, "details", None) or {}).get("test_model")
            results.append(ClipScore(clip.id, clip.task, clip.success, float(scored.score), None,
                                     time.perf_counter() - start, str(test_model) if test_model else None))
        except Exception as exc:
            results.append(
                ClipScore(clip.id, clip.task, clip.success, None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start)
            )
        if progress is not None:
            progress(clip)
    return results


def test_model_note(results: Sequence[ClipScore]) -> str | None:
    """The report's header line when any score came from a test model, else None."""
    models = sorted({r.test_model for r in results if r.test_model})
    if not models:
        return None
    return (f"TEST MODEL: scored by {', '.join(models)}, whose weights are random; the numbers below only show "
            "that the pipeline runs and mean nothing about the rewarder")


def summarise(results: Sequence[ClipScore], threshold: float, criterion: str = "agreement") -> dict[str, Any]:
    """Metrics at the rewarder's threshold and at the chosen one, overall and per task."""
    ok = [r for r in results if r.score is not None]
    scores = np.array([r.score for r in ok], float)
    labels = np.array([r.label for r in ok], bool)
    summary: dict[str, Any] = {
        "n_clips": len(results),
        "n_scored": len(ok),
        "n_errors": len(results) - len(ok),
        "n_success_labels": int(labels.sum()),
        "criterion": criterion,
        "threshold": threshold,
    }
    if not ok:
        summary.update(chosen_threshold=None, at_threshold=None, at_chosen=None, roc_auc=None, per_task={})
        return summary
    chosen = choose_threshold(scores, labels, criterion, prefer=threshold)
    summary["chosen_threshold"] = chosen
    summary["at_threshold"] = confusion(scores, labels, threshold)
    summary["at_chosen"] = confusion(scores, labels, chosen)
    summary["roc_auc"] = roc_auc(scores, labels)
    per_task = {}
    for task in sorted({r.task for r in ok}):
        mask = np.array([r.task == task for r in ok])
        per_task[task] = {
            "n": int(mask.sum()),
            "at_threshold": confusion(scores[mask], labels[mask], threshold),
            "at_chosen": confusion(scores[mask], labels[mask], chosen),
            "roc_auc": roc_auc(scores[mask], labels[mask]),
        }
    summary["per_task"] = per_task
    summary["mean_seconds_per_clip"] = float(np.mean([r.seconds for r in results]))
    return summary
