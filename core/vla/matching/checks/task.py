"""Task text: the text the policy will receive against the texts the dataset was recorded with.

A language-conditioned policy embeds the exact string; "Grasp a brain and put it in the bin."
is another input than "Grab the brain" (seed 004: fixing it took success from 0% to 33%).
Exact match passes; a difference only in case, spacing or a final full stop warns (the
tokenizer still sees another text); anything else fails, showing the closest training text
and the words that differ.
"""

from __future__ import annotations

import difflib
import re

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, worst


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(".").casefold()


def word_diff(trained: str, deployed: str) -> str:
    """The deployed text with words removed from the trained one as [-w-] and added ones as {+w+}."""
    a, b = trained.split(), deployed.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(a[i1:i2])
        if op in ("delete", "replace"):
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if op in ("insert", "replace"):
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def compare(text: str, tasks: list[str]) -> dict:
    if text in tasks:
        return {"text": text, "status": PASS, "closest": text, "similarity": 1.0, "diff": ""}
    scored = [(difflib.SequenceMatcher(a=normalise(t), b=normalise(text)).ratio(), t) for t in tasks]
    similarity, closest = max(scored) if scored else (0.0, "")
    status = WARN if any(normalise(t) == normalise(text) for t in tasks) else FAIL
    return {"text": text, "status": status, "closest": closest, "similarity": round(similarity, 3),
            "diff": word_diff(closest, text)}


def check_task(inputs: MatchInputs) -> Check:
    tasks = inputs.dataset.tasks
    deployment = inputs.deployment
    texts = []
    if deployment.task:
        texts.append((deployment.task_source or "deployment", deployment.task))
    if deployment.recording is not None:
        for text in dict.fromkeys(deployment.recording.tasks):
            texts.append(("recording", text))
    if not texts:
        return Check("task", SKIP, "no task given (--task) and no eval recording", {"dataset_tasks": tasks})
    results = [dict(compare(text, tasks), source=source) for source, text in texts]
    status = worst(r["status"] for r in results)
    bad = next((r for r in results if r["status"] == status), results[0])
    numbers = {"dataset_tasks": tasks, "compared": results}
    if status == PASS:
        summary = f"{bad['text']!r} is a training task"
    elif status == WARN:
        summary = f"{bad['text']!r} ({bad['source']}) differs from the training's {bad['closest']!r} only in case, spacing or punctuation"
    else:
        summary = (f"{bad['text']!r} ({bad['source']}) is not a training task; closest: {bad['closest']!r} "
                   f"(similarity {bad['similarity']:.2f}; {bad['diff']})")
        reads = inputs.checkpoint.reads_task if inputs.checkpoint is not None else None
        if reads is False:
            summary += f"; {inputs.checkpoint.policy} ignores the text, but it was trained for another task"
    return Check("task", status, summary, numbers)
