"""Reading a yes/no probability from a first token's top log-probabilities.

Tokenisers spell the answer many ways: "Yes", "yes", " Yes", "YES", "Yes." and, for byte-level
BPE shown raw, "ĠYes". Each variant is its own token with its own probability, so the
probabilities of all variants are summed before renormalising:
    score = P(yes) / (P(yes) + P(no)).
"""

from __future__ import annotations

import math
import unicodedata
from typing import Iterable

BPE_SPACE = "\u0120"  # byte-level BPE's marker for a leading space
SENTENCEPIECE_SPACE = "\u2581"


def normalise_token(token: str) -> str:
    token = token.replace(BPE_SPACE, " ").replace(SENTENCEPIECE_SPACE, " ")
    token = unicodedata.normalize("NFKC", token).strip().lower()
    return token.strip(".,!:;\"'()[]")


def yes_no_probabilities(
    top: Iterable[tuple[str, float]], yes: Iterable[str], no: Iterable[str]
) -> tuple[float, float]:
    """(P(yes), P(no)) summed over token variants, from (token, logprob) pairs."""
    yes_set = {normalise_token(t) for t in yes}
    no_set = {normalise_token(t) for t in no}
    p_yes = p_no = 0.0
    seen: set[str] = set()
    for token, logprob in top:
        if token in seen or logprob is None or not math.isfinite(logprob):
            continue
        seen.add(token)
        norm = normalise_token(token)
        if norm in yes_set:
            p_yes += math.exp(logprob)
        elif norm in no_set:
            p_no += math.exp(logprob)
    return p_yes, p_no


def score_from_top_logprobs(top, yes, no) -> tuple[float, dict]:
    """The score and the figures behind it; raises ValueError when neither answer is present."""
    top = list(top)
    p_yes, p_no = yes_no_probabilities(top, yes, no)
    if p_yes + p_no <= 0.0:
        shown = ", ".join(repr(t) for t, _ in top[:8])
        raise ValueError(f"neither a yes nor a no token among the first token's top log-probabilities ({shown})")
    return p_yes / (p_yes + p_no), {"p_yes": p_yes, "p_no": p_no, "p_other": max(0.0, 1.0 - p_yes - p_no)}
