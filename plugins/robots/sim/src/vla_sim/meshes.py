"""Coarser copies of the SO-101's CAD meshes, for fast software rendering.

The published STL meshes hold about 320,000 triangles. Headless machines render with Mesa's
llvmpipe on the CPU, where that costs hundreds of milliseconds per frame; at 224x224 a
millimetre is about a pixel, so the arm looks the same with a few percent of the triangles.
Simplification is vertex clustering: vertices are snapped to a grid, each cell's vertices
become their mean, and triangles that collapse are dropped. The result goes into the MJCF
inline (``vertex``/``face``), so nothing is written to disk.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

_STL_RECORD = np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def read_binary_stl(path: Path) -> np.ndarray | None:
    """Triangles (n, 3, 3) of a binary STL, or None when the file is not one (e.g. ASCII STL)."""
    data = path.read_bytes()
    if len(data) < 84:
        return None
    n = int(np.frombuffer(data, "<u4", count=1, offset=80)[0])
    if len(data) != 84 + 50 * n:
        return None
    return np.frombuffer(data, _STL_RECORD, count=n, offset=84)["v"].astype(np.float64)


@functools.lru_cache(maxsize=64)
def simplified(path: str, cell: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices (v, 3), faces (f, 3)) of the mesh at ``path`` clustered on a ``cell``-metre grid."""
    tris = read_binary_stl(Path(path))
    if tris is None or len(tris) == 0:
        return None
    verts = tris.reshape(-1, 3)
    cells = np.floor(verts / cell).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]  # one integer per grid cell
    _, cluster, counts = np.unique(keys, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, cluster, verts)
    centres = sums / counts[:, None]
    faces = cluster.reshape(-1, 3)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    # drop duplicate triangles (same three vertices in any order), keep the first winding
    tri = np.sort(faces, axis=1)
    n = len(centres)
    _, first = np.unique((tri[:, 0] * n + tri[:, 1]) * n + tri[:, 2], return_index=True)
    faces = faces[np.sort(first)]
    used, faces = np.unique(faces, return_inverse=True)
    return centres[used], faces.reshape(-1, 3)
