"""Prometheus metrics of the service, in a registry of its own (two apps in one process do not collide)."""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
RATE_WINDOW_S = 10.0  # windows/s is averaged over the last 10 s
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Request, queue, batch and decoding counters for ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("ast_http_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=reg)
        self.latency = Histogram("ast_http_request_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=reg)
        self.in_flight = Gauge("ast_http_requests_in_flight", "Identify requests admitted and not yet answered",
                               registry=reg)
        self.queue_windows = Gauge("ast_batch_queue_windows", "Windows waiting for an inference run",
                                   registry=reg)
        self.batch_size = Histogram("ast_batch_size", "Windows per ONNX Runtime run", buckets=BATCH_BUCKETS,
                                    registry=reg)
        self.batch_requests = Histogram("ast_batch_requests", "Requests sharing one ONNX Runtime run",
                                        buckets=BATCH_BUCKETS, registry=reg)
        self.windows = Counter("ast_windows_scored", "Windows scored", registry=reg)
        self.audio_seconds = Counter("ast_audio_seconds", "Seconds of decoded audio identified", registry=reg)
        self.decode_errors = Counter("ast_decode_errors", "Uploads that could not be decoded, by status",
                                     ["status"], registry=reg)
        rate = Gauge("ast_windows_per_second", f"Windows scored per second over the last {RATE_WINDOW_S:g} s",
                     registry=reg)
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        rate.set_function(self.windows_per_second)

    def observe_batch(self, windows: int, requests: int) -> None:
        """Record one inference run of ``windows`` windows from ``requests`` requests."""
        self.batch_size.observe(windows)
        self.batch_requests.observe(requests)
        self.windows.inc(windows)
        with self._lock:
            self._recent.append((time.monotonic(), windows))

    def windows_per_second(self) -> float:
        """Windows scored per second over the last :data:`RATE_WINDOW_S` seconds."""
        with self._lock:
            cutoff = time.monotonic() - RATE_WINDOW_S
            while self._recent and self._recent[0][0] < cutoff:
                self._recent.popleft()
            return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
