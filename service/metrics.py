"""Prometheus metrics in a registry of the app's own, so every app (and every test) counts alone."""

from __future__ import annotations

import threading
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kbq_http_requests_total",
            "HTTP requests by route template and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kbq_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "kbq_answers_total",
            "Answers given, by whether the service abstained.",
            ["abstained"],
            registry=self.registry,
        )
        self.abstention_rate = Gauge(
            "kbq_abstention_rate", "Share of answers since start that abstained.", registry=self.registry
        )
        self.documents = Gauge(
            "kbq_index_documents", "Documents in the served index.", registry=self.registry
        )
        self.chunks = Gauge("kbq_index_chunks", "Chunks in the served index.", registry=self.registry)
        self._given = {True: 0, False: 0}
        self._lock = threading.Lock()

    def answered(self, abstained: bool) -> None:
        self.answers.labels(abstained=str(abstained).lower()).inc()
        with self._lock:
            self._given[abstained] += 1
            self.abstention_rate.set(self._given[True] / (self._given[True] + self._given[False]))

    def index(self, documents: int, chunks: int) -> None:
        self.documents.set(documents)
        self.chunks.set(chunks)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path, to keep label sets small)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            # clients choose methods freely; an unbounded label would let them grow the registry
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
