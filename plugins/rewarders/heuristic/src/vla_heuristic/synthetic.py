"""Drawn scenes of the three sim tasks with a known outcome, for tests, benches and demos.

Not a simulator: flat shapes on a table-coloured background, with lighting and noise varied
by seed, so the colour masks and each rule's geometry can be checked without MuJoCo.
"""

from __future__ import annotations

import numpy as np

TASK_GOALS = {
    "pick_place": "put the red cube in the blue bowl",
    "push_left": "push the green cube to the left of the line",
    "lift": "lift the yellow cube",
}
RGB = {"red": (200, 25, 25), "green": (30, 170, 50), "blue": (30, 60, 200), "yellow": (225, 200, 30),
       "black": (20, 20, 20), "white": (235, 235, 232), "table": (200, 190, 170)}


def _shade(colour, gain):
    return tuple(int(np.clip(c * gain, 0, 255)) for c in colour)


def draw_scene(task: str, success: bool, seed: int, size=(240, 320), n_frames: int = 1,
               arm: str = "yellow") -> list[np.ndarray]:
    """Frames (oldest first) of ``task`` ending in success or failure, varied by ``seed``.

    ``arm`` is the arm's colour: "yellow" (the SO-101's printed parts, the yellow cube's colour)
    or "white" (the simulator's repainted arm)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    gain = rng.uniform(0.8, 1.15)
    base = np.empty((h, w, 3), np.uint8)
    base[:] = _shade(RGB["table"], gain)
    cube = int(rng.integers(14, 20)) * w // 320

    def cube_at(img, colour, cx, cy):
        half = cube // 2
        cv2.rectangle(img, (int(cx - half), int(cy - half)), (int(cx + half), int(cy + half)), _shade(RGB[colour], gain), -1)

    if arm not in ("yellow", "white"):
        raise ValueError(f"arm must be yellow or white, got {arm!r}")

    def draw_arm(img, x, y):  # reaching in from the far side of the table
        cv2.line(img, (w // 2, 0), (int(x), int(y) - cube), _shade(RGB[arm], gain), max(3, w // 40))

    frames = []
    times = np.linspace(0, 1, n_frames) if n_frames > 1 else np.array([1.0])  # one frame: the end state
    if task == "pick_place":
        bx, by = rng.uniform(0.55, 0.8) * w, rng.uniform(0.45, 0.7) * h
        ax, ay = 0.16 * w, 0.07 * h
        start = (rng.uniform(0.1, 0.35) * w, rng.uniform(0.4, 0.85) * h)
        if success:
            end = (bx + rng.uniform(-0.3, 0.3) * ax, by + rng.uniform(-0.2, 0.2) * ay)
        else:
            kind = rng.integers(3)
            if kind == 0:  # never moved
                end = start
            elif kind == 1:  # dropped beside the bowl
                end = (bx - ax - cube * rng.uniform(1.2, 3), by + rng.uniform(-0.5, 0.5) * ay)
            else:  # dropped in front of the bowl
                end = (bx + rng.uniform(-0.5, 0.5) * ax, by + ay + cube * rng.uniform(1.5, 3))
        for t in times:
            img = base.copy()
            cv2.ellipse(img, (int(bx), int(by)), (int(ax), int(ay)), 0, 0, 360, _shade(RGB["blue"], gain), -1)
            cv2.ellipse(img, (int(bx), int(by + ay * 0.15)), (int(ax * 0.8), int(ay * 0.7)), 0, 0, 360,
                        _shade(RGB["blue"], gain * 0.7), -1)
            x, y = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
            cube_at(img, "red", x, y)
            draw_arm(img, x, y)
            frames.append(img)
    elif task == "push_left":
        line_x = rng.uniform(0.4, 0.6) * w
        line_end = line_x + rng.uniform(-3, 3)
        start = (line_x + rng.uniform(0.05, 0.25) * w, rng.uniform(0.35, 0.8) * h)
        if success:
            end = (line_x - cube / 2 - rng.uniform(0.02, 0.2) * w, start[1] + rng.uniform(-0.05, 0.05) * h)
        else:
            kind = rng.integers(2)
            end = start if kind == 0 else (line_x + rng.uniform(-0.3, 0.3) * cube, start[1])  # astride the line
        for t in times:
            img = base.copy()
            cv2.line(img, (int(line_x), h // 5), (int(line_end), h - 1), RGB["black"], max(2, w // 160))
            x, y = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
            cube_at(img, "green", x, y)
            draw_arm(img, x + cube, y)
            frames.append(img)
    elif task == "lift":
        start = (rng.uniform(0.25, 0.75) * w, rng.uniform(0.55, 0.85) * h)
        if success:
            rise = rng.uniform(0.12, 0.3) * h
        else:
            rise = rng.choice([0.0, rng.uniform(0.0, 0.02) * h])
        end = (start[0] + rng.uniform(-0.05, 0.05) * w, start[1] - rise)
        n = max(n_frames, 2)
        for t in np.linspace(0, 1, n):
            img = base.copy()
            x, y = start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])
            cube_at(img, "yellow", x, y)
            # parked at first, then gripping the cube (one blob with it when the arm is yellow)
            tip = (w // 2, h // 4) if t == 0 else (int(x), int(y))
            cv2.line(img, (w // 2, 0), tip, _shade(RGB[arm], gain), max(3, w // 40))
            frames.append(img)
    else:
        raise ValueError(f"unknown task {task!r} (known: {sorted(TASK_GOALS)})")
    noise = rng.normal(0, 4, size=(len(frames), h, w, 3))
    return [np.clip(f + n, 0, 255).astype(np.uint8) for f, n in zip(frames, noise)]
