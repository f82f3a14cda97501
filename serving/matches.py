"""Turn per-window probabilities of one song into matches: which samples, how sure, and where.

Rules (shared with training's ``test_top1`` so both report the same top-1 for a song):

- **Song score** of a sample = :func:`serving.contract.song_scores`: the max over the song's windows.
- **Top-k**: the k samples with the highest song scores, best first.
- **Threshold** ``P`` (optional): matches whose song score is below ``P`` are dropped, so a song whose best
  score is below ``P`` reports no match ("no known sample") instead of a forced guess.
- **Span** of a sample: its peak window (the one giving the song score) grown left and right over consecutive
  windows in which the sample ranks first, or (with a threshold) scores at least ``P``. The span runs from the
  first window's start to the last window's end, clipped to the song's duration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from serving.contract import SCORE_DECIMALS, TIME_DECIMALS, round_time, song_scores

REQUIRED_FIELDS = ("sample", "score", "start_s", "end_s")


@dataclass
class Match:
    """One identified sample in a song.

    The optional fields come from retrieval (``identify --index``): every occurrence in the song (``spans``,
    ``{start_s, end_s}`` each), where in the record (``record_start_s``, ``record_end_s``) and the estimated
    time-scale (``speed``). They are left out of :meth:`to_dict` when absent, so the classifier's JSON is
    unchanged.
    """

    sample: str
    score: float
    start_s: float
    end_s: float
    spans: list[dict[str, float]] | None = None
    record_start_s: float | None = None
    record_end_s: float | None = None
    speed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None or key in REQUIRED_FIELDS}


@dataclass
class Timeline:
    """Per-window scores of the song's top-k samples (``scores[k][i]`` = sample k in window i)."""

    window_s: float
    start_s: list[float]
    samples: list[str]
    scores: list[list[float]]


@dataclass
class SongResult:
    """The answer for one input path. ``error`` is None when the file was scored."""

    path: str
    duration_s: float | None = None
    matches: list[Match] = field(default_factory=list)
    error: str | None = None
    timeline: Timeline | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the DESIGN.md fields (``timeline`` only when requested)."""
        out = {"path": self.path, "duration_s": self.duration_s,
               "matches": [m.to_dict() for m in self.matches], "error": self.error}
        if self.timeline is not None:
            out["timeline"] = asdict(self.timeline)
        return out


@dataclass
class MatchOptions:
    """How to pick matches. ``threshold=None`` means no threshold."""

    top_k: int = 1
    threshold: float | None = None
    timeline: bool = False


def span_windows(probs: np.ndarray, cls: int, threshold: float | None) -> tuple[int, int]:
    """First and last window index of ``cls``'s best span (see module docstring).

    Args:
        probs: [N, C] window probabilities, windows in time order.
        cls: class index.
        threshold: optional score threshold that also admits a window into the span.
    """
    col = probs[:, cls]  # [N]
    peak = int(np.argmax(col))
    mask = probs.argmax(axis=1) == cls  # [N]
    if threshold is not None:
        mask |= col >= threshold
    mask[peak] = True
    left = np.flatnonzero(~mask[:peak])
    right = np.flatnonzero(~mask[peak:])
    first = int(left[-1]) + 1 if left.size else 0
    last = peak + int(right[0]) - 1 if right.size else probs.shape[0] - 1
    return first, last


def match_song(
    probs: np.ndarray,
    starts: np.ndarray,
    duration_s: float,
    labels: tuple[str, ...] | list[str],
    window_s: float,
    sample_rate: int,
    options: MatchOptions,
) -> tuple[list[Match], Timeline | None]:
    """Matches (best first) and optional timeline for one song.

    Args:
        probs: [N, C] window probabilities.
        starts: [N] window starts in samples, ascending.
        duration_s: decoded song length in seconds.
        labels: class names, index = class.
        window_s: window length in seconds.
        sample_rate: rate of ``starts``.
        options: top-k, threshold, timeline.
    """
    scores = song_scores(probs)  # [C]
    k = max(1, min(options.top_k, scores.shape[0]))
    top = np.argsort(-scores, kind="stable")[:k]  # [k]
    start_s = starts.astype(np.float64) / sample_rate  # [N]
    matches = []
    for cls in top:
        if options.threshold is not None and scores[cls] < options.threshold:
            break
        first, last = span_windows(probs, int(cls), options.threshold)
        end = min(start_s[last] + window_s, duration_s)
        matches.append(Match(labels[cls], float(scores[cls]), round_time(start_s[first]),
                             round_time(max(end, start_s[first]))))
    timeline = None
    if options.timeline:
        timeline = Timeline(window_s, np.round(start_s, TIME_DECIMALS).tolist(), [labels[c] for c in top],
                            np.round(probs[:, top].T.astype(np.float64), SCORE_DECIMALS).tolist())
    return matches, timeline
