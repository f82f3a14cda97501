"""Timing core: run a variant over a fixed clip schedule and keep its outputs for agreement.

Every variant sees the same clips in the same order, so the top-1 agreement between two variants is computed
on identical inputs. Per-call wall time is measured around the whole call (frontend included, host<->device
copies included), and the median over calls is reported: it is robust to the noise of a shared machine.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# A runner maps waveforms [B, S] float32 to (probs [B, C], embedding [B, D]) float32.
Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Unavailable(RuntimeError):
    """A variant cannot run here (no GPU, missing package, export failed); the reason is reported."""


@dataclass
class TimingPlan:
    """How much to run per (variant, batch).

    Attributes:
        batches: batch sizes to measure.
        iters: fixed timed calls per batch; 0 means "derive from target_s".
        target_s: wall time to aim for per (variant, batch) when ``iters`` is 0.
        min_iters / max_iters: bounds on the derived count.
        budget_s: a batch whose estimated cost exceeds this is skipped (and reported as skipped).
        warmup: untimed calls at the smallest batch before timing.
    """

    batches: list[int]
    iters: int = 0
    target_s: float = 3.0
    min_iters: int = 1
    max_iters: int = 30
    budget_s: float = 60.0
    warmup: int = 1


@dataclass
class BatchTiming:
    batch: int
    seconds: list[float] = field(default_factory=list)  # wall time per timed call
    skipped: str | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def clips_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def ms_per_clip(self) -> float:
        return 1000.0 * self.median_s / self.batch

    def to_dict(self, clip_seconds: float) -> dict:
        if self.skipped or not self.seconds:
            return {"batch": self.batch, "skipped": self.skipped or "not run"}
        return {
            "batch": self.batch,
            "iters": len(self.seconds),
            "median_s": self.median_s,
            "min_s": min(self.seconds),
            "mean_s": statistics.fmean(self.seconds),
            "clips_per_s": self.clips_per_s,
            "ms_per_clip": self.ms_per_clip,
            "real_time_factor": self.clips_per_s * clip_seconds,
        }


class ClipFeed:
    """Hands out clips from a fixed pool, cyclically, in the same order for every variant."""

    def __init__(self, pool: np.ndarray) -> None:
        self.pool = pool  # [N, S]
        self.pos = 0
        self.indices: list[int] = []

    def take(self, batch: int) -> np.ndarray:
        idx = [(self.pos + i) % len(self.pool) for i in range(batch)]
        self.pos += batch
        self.indices.extend(idx)
        return np.ascontiguousarray(self.pool[idx])  # [B, S]


def _timed(runner: Runner, x: np.ndarray) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    probs, emb = runner(x)
    elapsed = time.perf_counter() - start
    return elapsed, np.concatenate([np.asarray(probs), np.asarray(emb)], axis=-1).astype(np.float32)


def _iters_for(plan: TimingPlan, batch: int, per_clip_s: float) -> int:
    if plan.iters > 0:
        return max(1, math.ceil(plan.iters / batch))
    wanted = math.ceil(plan.target_s / max(per_clip_s * batch, 1e-6))
    return int(min(plan.max_iters, max(plan.min_iters, wanted)))


def measure(runner: Runner, pool: np.ndarray, plan: TimingPlan) -> tuple[list[BatchTiming], np.ndarray]:
    """Time ``runner`` at each batch of ``plan``.

    Returns:
        (timings per batch, outputs [N_pool, C + D] per pool clip (probs then embedding, see
        :func:`split`), NaN for clips never fed).
    """
    feed = ClipFeed(pool)
    outputs: list[np.ndarray] = []
    per_clip = math.inf
    for _ in range(plan.warmup):
        b0 = min(plan.batches)
        dt, probs = _timed(runner, feed.take(b0))
        outputs.append(probs)
        per_clip = min(per_clip, dt / b0)
    results = []
    for batch in plan.batches:
        timing = BatchTiming(batch)
        iters = _iters_for(plan, batch, per_clip if math.isfinite(per_clip) else 0.0)
        estimate = per_clip * batch * iters if math.isfinite(per_clip) else 0.0
        if estimate > plan.budget_s:
            timing.skipped = f"skipped: est. {estimate:.0f} s > budget {plan.budget_s:.0f} s"
            log.info("batch %d %s", batch, timing.skipped)
            results.append(timing)
            continue
        for _ in range(iters):
            dt, probs = _timed(runner, feed.take(batch))
            timing.seconds.append(dt)
            outputs.append(probs)
        per_clip = min(per_clip, timing.median_s / batch)
        log.info("batch %d: %d iters, %.1f ms/clip", batch, iters, timing.ms_per_clip)
        results.append(timing)
    return results, _by_clip(np.concatenate(outputs, axis=0), feed.indices, len(pool))


def _by_clip(probs: np.ndarray, indices: list[int], pool_size: int) -> np.ndarray:
    out = np.full((pool_size, probs.shape[-1]), np.nan, dtype=np.float32)  # [N, C]
    out[indices] = probs  # later calls on the same clip overwrite earlier ones
    return out


def split(outputs: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """[N, C + D] -> probs [N, C], embedding [N, D]."""
    return outputs[:, :num_classes], outputs[:, num_classes:]


def embedding_error(emb: np.ndarray, ref: np.ndarray) -> float | None:
    """Mean |e - e_ref| over the mean spread of e_ref around its centroid (clips scored by both).

    Weight-agnostic: top-1 flips when this approaches the head's margins; a trained encoder spreads its
    clips far more than a random one, so the same absolute error matters less there.
    """
    both = ~np.isnan(emb).any(-1) & ~np.isnan(ref).any(-1)  # [N]
    if both.sum() < 2:
        return None
    e, r = emb[both], ref[both]
    spread = np.linalg.norm(r - r.mean(0), axis=-1).mean()
    return float(np.linalg.norm(e - r, axis=-1).mean() / spread) if spread > 0 else None


def top1_agreement(probs: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Fraction of clips (scored by both, see :func:`measure`) whose argmax matches the reference."""
    both = ~np.isnan(probs).any(-1) & ~np.isnan(ref).any(-1)  # [N]
    n = int(both.sum())
    if n == 0:
        return math.nan, 0
    return float((probs[both].argmax(-1) == ref[both].argmax(-1)).mean()), n
