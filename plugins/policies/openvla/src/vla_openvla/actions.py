"""OpenVLA's prompt, action de-tokenisation and un-normalisation, as pure numpy.

These follow the formulas of openvla/openvla (``prismatic/vla/action_tokenizer.py`` and
``OpenVLAForActionPrediction.predict_action`` in ``prismatic/extern/hf/modeling_prismatic.py``):

- Each action dimension is one of 256 uniform bins over [-1, 1]; the bin edges are
  ``linspace(-1, 1, 256)`` and a bin decodes to the centre between two edges (255 centres).
- Bins are the *last* tokens of the language model's vocabulary. The vocabulary size used is
  the text config's ``vocab_size`` minus ``pad_to_multiple_of`` (the padding added to the
  embedding matrix is not part of it). A token id ``t`` decodes to bin index
  ``clip(vocab_size - t - 1, 0, 254)``.
- Un-normalisation uses the ``unnorm_key`` dataset's action statistics:
  ``0.5 * (a + 1) * (q99 - q01) + q01`` where ``mask`` is true (the default), and the
  normalised value unchanged where it is false (OpenVLA keeps the gripper that way).
- The action has as many dimensions as the statistics' ``q01`` (7 for every released
  dataset mix: end-effector delta x, y, z, roll, pitch, yaw and gripper).
- The prompt is ``In: What action should the robot take to {instruction}?\\nOut:`` with the
  instruction lower-cased (as OpenVLA's evaluation code does), and generation starts after
  the empty token (id 29871 for the Llama-2 tokenizer) which is appended when the prompt
  does not already end with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N_BINS = 256
EMPTY_TOKEN_ID = 29871  # Llama-2's "▁": OpenVLA was trained with it right after "Out:"


class UnnormKeyError(KeyError):
    """The requested statistics are not in the model; the message lists those that are."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


def prompt(instruction: str, lowercase: bool = True) -> str:
    text = instruction.strip()
    if lowercase:
        text = text.lower()
    return f"In: What action should the robot take to {text}?\nOut:"


def bin_centers(n_bins: int = N_BINS) -> np.ndarray:
    edges = np.linspace(-1.0, 1.0, n_bins)
    return (edges[:-1] + edges[1:]) / 2.0


def action_vocab_size(text_vocab_size: int, pad_to_multiple_of: int) -> int:
    """The vocabulary size OpenVLA counts action tokens back from (padding excluded)."""
    return int(text_vocab_size) - int(pad_to_multiple_of or 0)


def tokens_to_normalized(token_ids: Any, vocab_size: int, n_bins: int = N_BINS) -> np.ndarray:
    """Action token ids -> normalised actions in [-1, 1]."""
    ids = np.asarray(token_ids, dtype=np.int64)
    centers = bin_centers(n_bins)
    index = np.clip(vocab_size - ids - 1, 0, centers.shape[0] - 1)
    return centers[index]


def normalized_to_tokens(actions: Any, vocab_size: int, n_bins: int = N_BINS) -> np.ndarray:
    """The inverse used at training time (clip to [-1, 1], digitise against the bin edges)."""
    edges = np.linspace(-1.0, 1.0, n_bins)
    clipped = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    return vocab_size - np.digitize(clipped, edges)


def select_action_stats(norm_stats: dict | None, unnorm_key: str | None) -> dict | None:
    """The ``action`` statistics for ``unnorm_key``; None when the model has none.

    Without a key, a model trained on exactly one dataset uses that one's statistics.
    """
    if not norm_stats:
        return None
    if unnorm_key is None:
        if len(norm_stats) != 1:
            raise UnnormKeyError(
                f"this OpenVLA model was trained on {len(norm_stats)} datasets; set unnorm_key to one of: "
                f"{', '.join(sorted(norm_stats))}"
            )
        unnorm_key = next(iter(norm_stats))
    if unnorm_key not in norm_stats:
        raise UnnormKeyError(f"unnorm_key {unnorm_key!r} is not in the model's statistics; choose one of: {', '.join(sorted(norm_stats))}")
    return norm_stats[unnorm_key]["action"]


def action_dim(norm_stats: dict | None, unnorm_key: str | None, default: int = 7) -> int:
    stats = select_action_stats(norm_stats, unnorm_key)
    return default if stats is None else len(stats["q01"])


def unnormalize(normalized: Any, stats: dict | None) -> np.ndarray:
    """Normalised [-1, 1] actions -> the dataset's units, with the q01/q99 bounds and the mask."""
    a = np.asarray(normalized, dtype=np.float64)
    if stats is None:
        return a
    low = np.asarray(stats["q01"], dtype=np.float64)
    high = np.asarray(stats["q99"], dtype=np.float64)
    mask = np.asarray(stats.get("mask", np.ones_like(low, dtype=bool)), dtype=bool)
    return np.where(mask, 0.5 * (a + 1.0) * (high - low) + low, a)


def decode_actions(token_ids: Any, vocab_size: int, stats: dict | None) -> np.ndarray:
    """The last generated tokens -> one action in the dataset's units, float32."""
    return unnormalize(tokens_to_normalized(token_ids, vocab_size), stats).astype(np.float32)
