"""Is this camera the one the policy was trained with? Image similarity and the camera assignment.

The measure is SSIM (structural similarity, Wang, Bovik, Sheikh and Simoncelli 2004, as
scikit-image computes it: Gaussian window of sigma 1.5) on grey frames brought to one small
working size. Why SSIM:

- Lighting: SSIM compares local means, local contrast and the local correlation of the two
  images separately, and the correlation term ignores gain and offset inside each window, so a
  dimmer room or a lamp on one side lowers the score little. Colour histograms, by contrast,
  read a dimmer room as a different scene.
- Small object moves: at the working size (64 pixels wide) a cube that moved a few centimetres
  changes a few windows; the score is their mean, so the view's fixed structure (table edges,
  the arm's base, the gripper jaws in a wrist view) dominates.
- Front and wrist views differ in exactly that structure, so the crossed pairing scores far
  lower than the straight one.

Measured on the simulated arm (``bench/camera_identity.py``, mean straight vs crossed score,
smallest margin of five trials): new object layouts 0.74 vs 0.28 (+0.45), half the light 0.71 vs
0.32 (+0.37), 1.6x the light 0.74 vs 0.29 (+0.41), an uneven lamp 0.70 vs 0.30 (+0.37), the arm
moved away from its start pose 0.60 vs 0.30 (+0.23). Zero-mean cross-correlation of 16x21
thumbnails separates the easy cases more but the two hard ones less (+0.33 uneven lamp, +0.17
arm moved); colour histograms cannot tell the cameras apart in half the light (-0.01).

A deployment frame is scored against several reference frames of the training camera (episode
starts and later moments of a few episodes) and keeps its best score, so a frame taken with the
arm somewhere along its path still finds a training frame taken from near there.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Sequence

import numpy as np

WORK_WIDTH = 64  # pixels: frames are compared at this width (the training frame's aspect ratio)
SWAP_MARGIN = 0.05  # mean score gain per camera for a crossed assignment to count as a swap
LOW_SIMILARITY = 0.45  # below this the straight pairing "does not look like" the training camera


def _gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return image.astype(np.float64)


def prepare(image: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A grey frame at the working size: ``shape`` (h, w), or 64 wide at the frame's own aspect."""
    from skimage.transform import resize

    gray = _gray(image)
    if shape is None:
        h, w = gray.shape
        shape = (max(8, int(round(h * WORK_WIDTH / w))), WORK_WIDTH)
    if gray.shape != tuple(shape):
        gray = resize(gray, shape, anti_aliasing=True, preserve_range=True)
    return gray


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two prepared frames of one size (grey levels 0..255)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def best_score(frame: np.ndarray, references: Sequence[np.ndarray]) -> float:
    """The frame's highest SSIM against any of the (prepared) reference frames."""
    shape = references[0].shape
    prepared = prepare(frame, shape)
    return max(ssim(prepared, ref) for ref in references)


def similarity_matrix(
    deployed: dict[str, Sequence[np.ndarray]], training: dict[str, Sequence[np.ndarray]]
) -> dict[str, dict[str, float]]:
    """score[deployed camera][training camera]: the median over the deployed frames of each
    frame's best SSIM against that training camera's reference frames."""
    references = {}
    for name, frames in training.items():
        first = prepare(frames[0])
        references[name] = [first] + [prepare(f, first.shape) for f in frames[1:]]
    return {
        d: {t: float(np.median([best_score(f, refs) for f in frames])) for t, refs in references.items()}
        for d, frames in deployed.items()
    }


def best_assignment(score: dict[str, dict[str, float]], cameras: Iterable[str], candidates: Iterable[str]):
    """The one-to-one pairing of ``cameras`` with ``candidates`` whose summed score is highest.

    Returns (pairing dict, total). Brute force over permutations: labs have two to four cameras.
    """
    cameras, candidates = list(cameras), list(candidates)
    best, best_total = None, -np.inf
    for chosen in itertools.permutations(candidates, len(cameras)):
        total = sum(score[c][t] for c, t in zip(cameras, chosen))
        if total > best_total + 1e-12:
            best, best_total = dict(zip(cameras, chosen)), total
    return best or {}, float(best_total)
