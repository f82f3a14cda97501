"""``ast-serve info`` and ``ast-serve bench`` reports.

Real-time factor (RTF) = seconds of song covered per second of wall time. On synthetic windows every window
stands for one hop of a song (that is how identify advances), so RTF = clips/s x hop seconds. Over real files
(``--files``) RTF = total decoded duration / wall time of the whole identify path, decoding included.

``--format json`` prints one object (:meth:`BenchReport.to_dict`): ``clips_per_s``, ``rtf``, ``p50_ms``,
``p95_ms`` (per ``run`` call), ``backend``, ``precision``, ``provider`` and the run's size.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.identify import IdentifyOptions, hop_samples, identify
from serving.session import ModelSession

NOISE_AMPLITUDE = 0.1
WARMUP_BATCHES = 2
BENCH_SEED = 0
INFO_KEYS = ("format_version", "sample_rate", "window_samples", "hop_samples", "weights_sha256",
             "exporter_version", "opset", "precision")
MAX_LABELS_SHOWN = 20


@dataclass
class BenchReport:
    """Figures of one bench run (``backend``/``precision``: what the session actually ran)."""

    provider: str
    batch_size: int
    clips: int
    wall_s: float
    audio_s: float
    latencies_s: list[float] = field(default_factory=list)
    mode: str = "synthetic"
    backend: str = "ort"
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        """The ``--format json`` object: rates, latency percentiles per batch, and what ran."""
        lat = np.asarray(self.latencies_s or [0.0]) * 1000.0
        return {
            "clips_per_s": round(self.clips / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "rtf": round(self.audio_s / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "backend": self.backend,
            "precision": self.precision,
            "provider": self.provider,
            "mode": self.mode,
            "batch_size": self.batch_size,
            "clips": self.clips,
            "calls": len(self.latencies_s),
            "wall_s": round(self.wall_s, 3),
            "audio_s": round(self.audio_s, 3),
        }

    def format(self, fmt: str = "table") -> str:
        """``table`` (aligned ``key  value`` lines) or ``json`` (one object)."""
        d = self.to_dict()
        if fmt == "json":
            return json.dumps(d)
        return "\n".join([
            f"provider          {self.provider}",
            f"backend           {self.backend} ({self.precision})",
            f"mode              {self.mode}",
            f"batch size        {self.batch_size}",
            f"clips             {self.clips} in {self.wall_s:.2f} s",
            f"clips/s           {d['clips_per_s']:.1f}",
            f"real-time factor  {d['rtf']:.1f}x",
            f"latency p50       {d['p50_ms']:.2f} ms/batch",
            f"latency p95       {d['p95_ms']:.2f} ms/batch",
        ])


def bench_synthetic(session: ModelSession, batch_size: int, seconds: float, hop_s: float | None) -> BenchReport:
    """Run batches of noise windows for about ``seconds``; latency per ``session.run`` call."""
    meta = session.metadata
    rng = np.random.default_rng(BENCH_SEED)
    waves = (rng.standard_normal((batch_size, meta.window_samples)) * NOISE_AMPLITUDE).astype(np.float32)
    for _ in range(WARMUP_BATCHES):
        session.run(waves)
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(waves)
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    clips = len(latencies) * batch_size
    hop = hop_samples(session, hop_s) / meta.sample_rate
    return BenchReport(session.provider, batch_size, clips, wall, clips * hop, latencies,
                       backend=session.backend_name, precision=session.precision)


class _TimedSession:
    """Proxy that records the latency and size of every ``run`` call."""

    def __init__(self, session: ModelSession) -> None:
        self.session, self.metadata = session, session.metadata
        self.latencies: list[float] = []
        self.clips = 0

    def run(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        out = self.session.run(waves)
        self.latencies.append(time.perf_counter() - t0)
        self.clips += waves.shape[0]
        return out


def bench_files(session: ModelSession, paths: list[str], options: IdentifyOptions) -> BenchReport:
    """Time the whole identify path (decode, resample, window, infer, match) over real files."""
    timed = _TimedSession(session)
    session.run(np.zeros((1, session.metadata.window_samples), dtype=np.float32))  # warm-up
    start = time.perf_counter()
    audio_s = 0.0
    for result in identify(timed, paths, options):  # type: ignore[arg-type]
        audio_s += result.duration_s or 0.0
    wall = time.perf_counter() - start
    return BenchReport(session.provider, options.batch_size, timed.clips, wall, audio_s, timed.latencies,
                       mode=f"files ({len(paths)}, decoding included)", backend=session.backend_name,
                       precision=session.precision)


def format_info(session: ModelSession, as_json: bool = False) -> str:
    """Human-readable (or raw JSON) metadata of the model."""
    raw: dict[str, Any] = session.metadata.raw
    if as_json:
        return json.dumps(raw, indent=2, ensure_ascii=False)
    meta = session.metadata
    lines = [f"model             {session.path}", f"provider          {session.provider}",
             f"backend           {session.backend_name} ({session.precision})"]
    lines += [f"{key:<18}{raw.get(key, '-')}" for key in INFO_KEYS]
    lines.append(f"window / hop      {meta.window_s:.3f} s / {meta.hop_s:.3f} s")
    labels = list(meta.labels)
    shown = ", ".join(labels[:MAX_LABELS_SHOWN]) + (" ..." if len(labels) > MAX_LABELS_SHOWN else "")
    lines.append(f"labels ({len(labels)})".ljust(18) + shown)
    for key in sorted(set(raw) - set(INFO_KEYS) - {"labels"}):
        lines.append(f"{key:<18}{json.dumps(raw[key], ensure_ascii=False)}")
    return "\n".join(lines)
