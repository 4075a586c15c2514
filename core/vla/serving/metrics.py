"""Prometheus metrics of the policy server, rendered in the text exposition format (version 0.0.4).

Written by hand rather than with prometheus_client: a handful of counters and histograms, all
updated from the event loop thread, so no locks and no extra dependency.
"""

from __future__ import annotations

import bisect
import math

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str, labels: str = "") -> list[str]:
        lines = []
        cumulative = 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, math.inf), self.counts):
            cumulative += count
            lines.append(f'{name}_bucket{{{labels}{sep}le="{_number(bound)}"}} {cumulative}')
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {_number(self.sum)}")
        lines.append(f"{name}_count{suffix} {self.count}")
        return lines


class ServerMetrics:
    def __init__(self, policy: str):
        self.policy = policy
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.request_latency = Histogram(LATENCY_BUCKETS_S)
        self.infer_latency = Histogram(LATENCY_BUCKETS_S)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.connections = 0
        self.ready = 0

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def render(self) -> str:
        label = f'policy="{self.policy}"'
        lines = [
            "# HELP vla_requests_total Requests answered with an action chunk.",
            "# TYPE vla_requests_total counter",
            f"vla_requests_total{{{label}}} {self.requests}",
            "# HELP vla_errors_total Requests answered with an error frame, by error code.",
            "# TYPE vla_errors_total counter",
        ]
        for code, count in sorted(self.errors.items()):
            lines.append(f'vla_errors_total{{{label},code="{code}"}} {count}')
        lines += [
            "# HELP vla_request_latency_seconds From receiving a request to sending its reply.",
            "# TYPE vla_request_latency_seconds histogram",
            *self.request_latency.render("vla_request_latency_seconds", label),
            "# HELP vla_infer_latency_seconds Duration of one batched model call.",
            "# TYPE vla_infer_latency_seconds histogram",
            *self.infer_latency.render("vla_infer_latency_seconds", label),
            "# HELP vla_batch_size Observations per model call.",
            "# TYPE vla_batch_size histogram",
            *self.batch_size.render("vla_batch_size", label),
            "# HELP vla_connections Open websocket connections.",
            "# TYPE vla_connections gauge",
            f"vla_connections{{{label}}} {self.connections}",
            "# HELP vla_ready 1 once the policy has warmed up and serves requests.",
            "# TYPE vla_ready gauge",
            f"vla_ready{{{label}}} {self.ready}",
        ]
        return "\n".join(lines) + "\n"
