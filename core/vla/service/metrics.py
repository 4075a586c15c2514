"""Prometheus metrics through prometheus_client, one private registry per server.

Every family carries the component's name (``policy="scripted"``, ``rewarder="heuristic"``);
per-client families also carry ``arm``, the id a client gives itself with the ``X-Vla-Arm``
header or an ``?arm=`` query parameter. Label values from the network are bounded: a name
is cut to 32 safe characters, and past ``MAX_ARMS`` distinct arms the rest count as
``other``, so a hostile client cannot grow the registry without limit.

A private registry (not prometheus_client's global one) lets several servers live in one
process, as they do in tests and benchmarks, without their counters mixing.
"""

from __future__ import annotations

import re
import threading
from typing import Iterable, Mapping

ARM_HEADER = "X-Vla-Arm"
ARM_QUERY = "arm"
UNNAMED = "unnamed"
OTHER = "other"
MAX_ARMS = 64
MAX_ARM_CHARS = 32
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def arm_label(value: str | None) -> str:
    """A client's self-given arm id as a label value: safe characters only, bounded length."""
    if not value:
        return UNNAMED
    cleaned = _UNSAFE.sub("", value.strip())[:MAX_ARM_CHARS]
    return cleaned or UNNAMED


def arm_from(headers: Mapping[str, str] | None, query: Mapping[str, str] | None = None) -> str:
    """The arm a request names: header first, then query parameter."""
    value = None
    if headers is not None:
        value = headers.get(ARM_HEADER)
    if not value and query is not None:
        value = query.get(ARM_QUERY)
    return arm_label(value)


class ServiceMetrics:
    """The families every service exports, plus a factory for its own.

    ``ready``, ``connections``, ``requests{arm,route,code}``, ``errors{arm,code}`` and
    ``latency{arm,route}`` (histogram ``<prefix>_request_seconds``). Add more with
    ``counter``/``gauge``/``histogram``: the name label is added for you.
    """

    def __init__(self, prefix: str, name_label: str, name: str, *, connection_labels: Iterable[str] = ()):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # the *_created series double every family and no dashboard reads them

        self.prefix = prefix
        self.name_label = name_label
        self.name = name
        self.registry = CollectorRegistry(auto_describe=True)
        self._arms: set[str] = set()
        self._arms_lock = threading.Lock()
        self._Counter, self._Gauge, self._Histogram = Counter, Gauge, Histogram
        self.ready = self.gauge("ready", "1 once the service has loaded and serves requests.")
        self.connections = self.gauge("connections", "Open client connections.", tuple(connection_labels))
        self.requests = self.counter("requests_total", "Requests answered, by arm, route and status code.", ("arm", "route", "code"))
        self.errors = self.counter("errors_total", "Requests refused or failed, by arm and error code.", ("arm", "code"))
        self.latency = self.histogram("request_seconds", "From a request's arrival to its reply.", ("arm", "route"))

    # ------------------------------------------------------------------ families

    def _labels(self, labels: Iterable[str]) -> tuple[str, ...]:
        return (self.name_label, *labels)

    def counter(self, name: str, documentation: str, labels: Iterable[str] = ()):
        family = self._Counter(f"{self.prefix}_{name}", documentation, self._labels(labels), registry=self.registry)
        return _Bound(family, self.name_label, self.name)

    def gauge(self, name: str, documentation: str, labels: Iterable[str] = ()):
        family = self._Gauge(f"{self.prefix}_{name}", documentation, self._labels(labels), registry=self.registry)
        return _Bound(family, self.name_label, self.name)

    def histogram(self, name: str, documentation: str, labels: Iterable[str] = (), buckets=LATENCY_BUCKETS_S):
        family = self._Histogram(f"{self.prefix}_{name}", documentation, self._labels(labels), registry=self.registry, buckets=buckets)
        return _Bound(family, self.name_label, self.name)

    # ------------------------------------------------------------------ labels

    def arm(self, value: str | None) -> str:
        """``arm_label(value)``, counted against this server's bound on distinct arms."""
        label = arm_label(value)
        with self._arms_lock:
            if label in self._arms:
                return label
            if len(self._arms) >= MAX_ARMS:
                return OTHER
            self._arms.add(label)
            return label

    # ------------------------------------------------------------------ output

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import generate_latest

        return generate_latest(self.registry), CONTENT_TYPE

    def value(self, family: str, **labels: str) -> float:
        """One sample's value (0 when absent): for tests and the dashboard's summaries."""
        labels = {self.name_label: self.name, **labels}
        got = self.registry.get_sample_value(f"{self.prefix}_{family}", labels)
        return 0.0 if got is None else got


class _Bound:
    """A metric family with the service's name label already applied."""

    def __init__(self, family, name_label: str, name: str):
        self.family = family
        self.name_label = name_label
        self.name = name

    def labels(self, *values: str, **kw: str):
        if kw:
            return self.family.labels(**{self.name_label: self.name}, **kw)
        return self.family.labels(self.name, *values)

    # shortcuts for families without extra labels
    def set(self, value: float) -> None:
        self.family.labels(self.name).set(value)

    def inc(self, amount: float = 1) -> None:
        self.family.labels(self.name).inc(amount)

    def dec(self, amount: float = 1) -> None:
        self.family.labels(self.name).dec(amount)

    def observe(self, value: float) -> None:
        self.family.labels(self.name).observe(value)
