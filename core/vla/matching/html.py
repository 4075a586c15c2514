"""`vla doctor --dataset ... --report DIR`: one HTML page with the numbers, the frames and the histograms.

DIR gets ``index.html`` (self-contained apart from the images beside it), ``report.json`` (the
same JSON as ``--json``), ``frames/*.png`` (each camera's deployed frame beside the training
frames of every camera, the one it is paired with first) and ``plots/*.png`` (histograms of
start states, actions and action jumps per joint, training against deployment).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from vla.matching.results import FAIL, PASS, SKIP, WARN, MatchReport

COLOURS = {PASS: "#1a7f37", WARN: "#9a6700", FAIL: "#cf222e", SKIP: "#6e7781"}
MIN_WIDTH = 224  # small frames are shown enlarged (nearest neighbour) so they can be seen
MIN_SPAN = 0.2  # radians: the narrowest range a histogram shows


def _save_frame(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if img.width < MIN_WIDTH:
        scale = int(np.ceil(MIN_WIDTH / img.width))
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _histograms(title: str, names: list[str], series: dict[str, np.ndarray], path: Path, markers=None) -> None:
    """One panel per joint: a histogram per series; ``markers`` draws vertical lines (live values)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[j // cols][j % cols]
        values = [np.asarray(v)[:, j] for v in series.values() if len(v)]
        lo = min(float(v.min()) for v in values) if values else 0.0
        hi = max(float(v.max()) for v in values) if values else 1.0
        if markers is not None:
            lo, hi = min(lo, float(np.min(markers[:, j]))), max(hi, float(np.max(markers[:, j])))
        if hi - lo < MIN_SPAN:  # a joint that never moved (a scripted start pose): show its neighbourhood
            mid = (hi + lo) / 2
            lo, hi = mid - MIN_SPAN / 2, mid + MIN_SPAN / 2
        bins = np.linspace(lo, hi, 31)
        for label, v in series.items():
            if len(v):
                column = np.asarray(v)[:, j]
                ax.hist(column, bins=bins, alpha=0.55, weights=np.full(len(column), 1 / len(column)), label=label)
        if markers is not None:
            for x in markers[:, j]:
                ax.axvline(float(x), color="#cf222e", linewidth=1.5)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("share", fontsize=8)
        ax.tick_params(labelsize=8)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(report: MatchReport, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = report.to_json()
    (out / "report.json").write_text(json.dumps(data, indent=2))
    a = report.artifacts
    sections = []

    frames = a.get("camera_frames", {})
    if frames:
        rows = []
        for source, cams in frames.items():
            for cam, pics in cams.items():
                dep = f"frames/{source}_{cam}_deployed.png"
                _save_frame(pics["deployed"], out / dep)
                cells = [f'<figure><img src="{dep}"><figcaption>{html.escape(source)}: {html.escape(cam)}</figcaption></figure>']
                for tcam, image in pics["training"].items():
                    name = f"frames/{source}_{cam}_training_{tcam}.png"
                    _save_frame(image, out / name)
                    cells.append(f'<figure><img src="{name}"><figcaption>training: {html.escape(tcam)}</figcaption></figure>')
                rows.append('<div class="row">' + "".join(cells) + "</div>")
        sections.append("<h2>Cameras side by side</h2>" + "".join(rows))

    plots = []
    if "start_states" in a:
        s = a["start_states"]
        markers = np.concatenate([np.atleast_2d(s[k]) for k in ("live", "recording") if k in s]) if any(
            k in s for k in ("live", "recording")) else None
        _histograms("episode start states (rad); red: deployment", s["names"], {"training": s["dataset"]},
                    out / "plots/start_states.png", markers)
        plots.append("plots/start_states.png")
    if "actions" in a:
        s = a["actions"]
        _histograms("actions (rad)", s["names"], {"training": s["dataset"], "recording": s["recording"]},
                    out / "plots/actions.png")
        plots.append("plots/actions.png")
    if "jumps" in a:
        s = a["jumps"]
        _histograms("|change between consecutive actions| (rad)", s["names"],
                    {"training": s["dataset"], "recording": s["recording"]}, out / "plots/action_jumps.png")
        plots.append("plots/action_jumps.png")
    if plots:
        sections.append("<h2>Histograms</h2>" + "".join(f'<img class="plot" src="{p}">' for p in plots))

    rows = []
    for check in data["checks"]:
        colour = COLOURS[check["status"]]
        numbers = html.escape(json.dumps(check["numbers"], indent=2))
        rows.append(f'<tr><td style="color:{colour};font-weight:bold">{check["status"]}</td><td>{check["name"]}</td>'
                    f'<td>{html.escape(check["summary"])}<details><summary>numbers</summary><pre>{numbers}</pre>'
                    "</details></td></tr>")
    ds = data["dataset"]
    head = (f"<p><b>training</b> {html.escape(ds['path'])}: {ds['episodes']} episodes, {ds['frames']} frames at "
            f"{ds['fps']:g} fps; tasks {html.escape(', '.join(map(repr, ds['tasks'])))}</p>")
    if data["checkpoint"]:
        head += f"<p><b>checkpoint</b> {html.escape(data['checkpoint']['policy'])} {html.escape(data['checkpoint']['path'])}</p>"
    head += f"<p><b>deployment</b> <code>{html.escape(json.dumps(data['deployment']))}</code></p>"
    verdict = data["status"]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vla doctor: {verdict}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; width: 100%; }} td {{ border-top: 1px solid #ddd; padding: 6px; vertical-align: top; }}
pre {{ background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }}
.row {{ display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 12px; }} figure {{ margin: 0; }}
img {{ image-rendering: pixelated; }} img.plot {{ max-width: 100%; image-rendering: auto; display: block; }}
</style></head><body>
<h1>Does the deployment match the training? <span id="verdict" style="color:{COLOURS[verdict]}">{verdict}</span></h1>
{head}
<table id="checks">{''.join(rows)}</table>
{''.join(sections)}
</body></html>"""
    (out / "index.html").write_text(page)
    return out / "index.html"
