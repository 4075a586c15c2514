"""Prometheus text-format counters for the rewarder service, kept without a client library."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, rewarder: str):
        self.rewarder = rewarder
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.frames = 0
        self.scores = 0
        self.successes = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.bucket_counts = [0] * len(LATENCY_BUCKETS_S)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.episodes = 0
        self.ready = 0

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self.requests[(route, status)] += 1

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def scored(self, frames: int, success: bool, seconds: float) -> None:
        with self._lock:
            self.frames += frames
            self.scores += 1
            self.successes += int(success)
            self.latency_sum += seconds
            self.latency_count += 1
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self.bucket_counts[i] += 1

    def render(self) -> str:
        r = f'rewarder="{self.rewarder}"'
        with self._lock:
            lines = [
                "# HELP vla_rewarder_ready 1 when the rewarder has loaded and serves scores.",
                "# TYPE vla_rewarder_ready gauge",
                f"vla_rewarder_ready{{{r}}} {self.ready}",
                "# HELP vla_rewarder_requests_total HTTP requests by route and status code.",
                "# TYPE vla_rewarder_requests_total counter",
            ]
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'vla_rewarder_requests_total{{{r},route="{route}",code="{status}"}} {n}')
            lines += [
                "# HELP vla_rewarder_errors_total Refused or failed requests by error code.",
                "# TYPE vla_rewarder_errors_total counter",
            ]
            for code, n in sorted(self.errors.items()):
                lines.append(f'vla_rewarder_errors_total{{{r},error="{code}"}} {n}')
            lines += [
                "# HELP vla_rewarder_frames_total Frames scored.",
                "# TYPE vla_rewarder_frames_total counter",
                f"vla_rewarder_frames_total{{{r}}} {self.frames}",
                "# HELP vla_rewarder_scores_total Scores returned.",
                "# TYPE vla_rewarder_scores_total counter",
                f"vla_rewarder_scores_total{{{r}}} {self.scores}",
                "# HELP vla_rewarder_successes_total Scores at or above the success threshold.",
                "# TYPE vla_rewarder_successes_total counter",
                f"vla_rewarder_successes_total{{{r}}} {self.successes}",
                "# HELP vla_rewarder_episodes Episodes with smoothing state.",
                "# TYPE vla_rewarder_episodes gauge",
                f"vla_rewarder_episodes{{{r}}} {self.episodes}",
                "# HELP vla_rewarder_score_seconds Time to score one request (decode excluded).",
                "# TYPE vla_rewarder_score_seconds histogram",
            ]
            for bound, n in zip(LATENCY_BUCKETS_S, self.bucket_counts):
                lines.append(f'vla_rewarder_score_seconds_bucket{{{r},le="{bound}"}} {n}')
            lines.append(f'vla_rewarder_score_seconds_bucket{{{r},le="+Inf"}} {self.latency_count}')
            lines.append(f"vla_rewarder_score_seconds_sum{{{r}}} {self.latency_sum:.6f}")
            lines.append(f"vla_rewarder_score_seconds_count{{{r}}} {self.latency_count}")
        return "\n".join(lines) + "\n"
