"""Start-up time of the `vla` CLI with every installed plugin loaded.

Prints the median wall time of 10 runs each of `vla --help` and `vla plugins list`.
Target: 0.3 s or less each (a lab engineer types these all day on a small arm computer).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
TARGET_S = 0.3
VLA = str(Path(sys.executable).parent / "vla")


def median_wall_time(args: list[str]) -> float:
    subprocess.run([VLA, *args], capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([VLA, *args], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    plugins = subprocess.run([VLA, "plugins", "list", "--json"], capture_output=True, text=True, check=True)
    import json

    loaded = [p["distribution"] for p in json.loads(plugins.stdout)["plugins"]]
    print(f"plugins loaded: {', '.join(loaded)}")
    worst = 0.0
    for args in (["--help"], ["plugins", "list"]):
        median = median_wall_time(args)
        worst = max(worst, median)
        print(f"vla {' '.join(args):<14} median of {RUNS}: {median * 1000:6.1f} ms  (target <= {TARGET_S * 1000:.0f} ms)")
    print(f"result: {'PASS' if worst <= TARGET_S else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
