"""Turn per-window probabilities of one song into matches: which samples, how sure, and where.

Rules (shared with training's ``test_top1`` so both report the same top-1 for a song):

- **Song score** of a sample = :func:`serving.contract.song_scores`: the max over the song's windows.
- **Top-k**: the k samples with the highest song scores, best first.
- **Threshold** ``P`` (optional): matches whose song score is below ``P`` are dropped, so a song whose best
  score is below ``P`` reports no match ("no known sample") instead of a forced guess. Without ``--threshold``
  the model's calibrated default applies (metadata ``threshold``, measured at the false-accept rate
  ``threshold_far`` when it was trained; see :func:`effective_threshold`); ``--threshold 0`` turns it off.
- **Span** of a sample: its peak window (the one giving the song score) grown left and right over consecutive
  windows in which the sample ranks first, or (with a threshold) scores at least ``P``. The span runs from the
  first window's start to the last window's end, clipped to the song's duration. ``start_s``/``end_s`` is this
  best occurrence.
- **Spans**: every occurrence, since samples loop: each run of such windows whose own peak reaches
  :data:`OCCURRENCE_FRACTION` of the song score (``P`` with a threshold) is one ``{start_s, end_s}``; runs whose
  time extents touch or overlap are merged (a single window that ranks another sample does not split a loop).
- **Rounding**: values are kept exact in memory and rounded once, when a result becomes JSON
  (:meth:`SongResult.to_dict`), by :func:`serving.contract.round_time` / :func:`~serving.contract.round_score`;
  so ``timeline``, ``start_s``, ``end_s`` and ``duration_s`` agree to the millisecond.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from serving.contract import round_score, round_time, song_scores

REQUIRED_FIELDS = ("sample", "score", "start_s", "end_s")
TIME_FIELDS = ("start_s", "end_s", "record_start_s", "record_end_s")
OCCURRENCE_FRACTION = 0.5  # a run of windows is an occurrence when its peak is >= this share of the song score


@dataclass
class Match:
    """One identified sample in a song.

    ``spans`` lists every occurrence in the song (``{start_s, end_s}`` each, the best one included), from the
    classifier and from retrieval. The other optional fields come from retrieval (``identify --index``): where
    in the record (``record_start_s``, ``record_end_s``) and the estimated time-scale (``speed``); they are
    left out of :meth:`to_dict` when absent.
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
        """JSON-ready, rounded by the contract's rule (times 1 ms, scores 4 decimals)."""
        out = {key: value for key, value in asdict(self).items() if value is not None or key in REQUIRED_FIELDS}
        out["score"] = round_score(self.score)
        for key in TIME_FIELDS:
            if out.get(key) is not None:
                out[key] = round_time(out[key])
        if self.spans is not None:
            out["spans"] = [{"start_s": round_time(s["start_s"]), "end_s": round_time(s["end_s"])} for s in self.spans]
        return out


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
    plot: str | None = None  # the PNG written by --plot

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``path``, ``duration_s``, ``matches``, ``error``; ``timeline`` and ``plot`` when
        requested."""
        duration = None if self.duration_s is None else round_time(self.duration_s)
        out = {"path": self.path, "duration_s": duration,
               "matches": [m.to_dict() for m in self.matches], "error": self.error}
        if self.timeline is not None:
            tl = self.timeline
            out["timeline"] = {"window_s": round_time(tl.window_s), "start_s": [round_time(t) for t in tl.start_s],
                               "samples": list(tl.samples),
                               "scores": [[round_score(v) for v in row] for row in tl.scores]}
        if self.plot is not None:
            out["plot"] = self.plot
        return out


@dataclass
class MatchOptions:
    """How to pick matches. ``threshold``: None = the model's calibrated default, 0 = no threshold."""

    top_k: int = 1
    threshold: float | None = None
    timeline: bool = False


def default_threshold(meta: dict[str, Any]) -> float | None:
    """The export's calibrated "no match" threshold (metadata ``threshold``), or None when it has none."""
    value = meta.get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        return None
    return float(value)


def effective_threshold(given: float | None, model_default: float | None) -> float | None:
    """The threshold a song is judged by: ``given``, else the model's default; 0 (or less) means none."""
    if given is None:
        return model_default
    return given if given > 0 else None


def _span_mask(probs: np.ndarray, cls: int, threshold: float | None) -> np.ndarray:
    """[N] bool: the windows that may be part of a span of ``cls`` (it ranks first, or scores >= threshold)."""
    col = probs[:, cls]  # [N]
    mask = probs.argmax(axis=1) == cls  # [N]
    if threshold is not None:
        mask |= col >= threshold
    mask[int(np.argmax(col))] = True
    return mask


def span_windows(probs: np.ndarray, cls: int, threshold: float | None) -> tuple[int, int]:
    """First and last window index of ``cls``'s best span (see module docstring).

    Args:
        probs: [N, C] window probabilities, windows in time order.
        cls: class index.
        threshold: optional score threshold that also admits a window into the span.
    """
    peak = int(np.argmax(probs[:, cls]))
    mask = _span_mask(probs, cls, threshold)
    left = np.flatnonzero(~mask[:peak])
    right = np.flatnonzero(~mask[peak:])
    first = int(left[-1]) + 1 if left.size else 0
    last = peak + int(right[0]) - 1 if right.size else probs.shape[0] - 1
    return first, last


def occurrence_spans(probs: np.ndarray, cls: int, threshold: float | None, start_s: np.ndarray, window_s: float,
                     duration_s: float) -> list[dict[str, float]]:
    """Every occurrence of ``cls`` (see module docstring), ``{start_s, end_s}`` in seconds, in time order.

    Args:
        probs: [N, C] window probabilities.
        cls: class index.
        threshold: optional score threshold (also the bar an occurrence's peak must reach).
        start_s: [N] window starts in seconds.
        window_s: window length in seconds.
        duration_s: song length in seconds (spans are clipped to it).
    """
    col = probs[:, cls]  # [N]
    bar = threshold if threshold is not None else OCCURRENCE_FRACTION * float(col.max())
    mask = _span_mask(probs, cls, threshold).astype(np.int8)  # [N]
    edges = np.diff(np.concatenate([[0], mask, [0]]))  # [N + 1]: +1 at run starts, -1 after run ends
    spans: list[dict[str, float]] = []
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if float(col[first:stop].max()) < bar:
            continue
        lo, hi = float(start_s[first]), min(float(start_s[stop - 1]) + window_s, duration_s)
        if spans and lo <= spans[-1]["end_s"]:  # touching or overlapping windows: one occurrence
            spans[-1]["end_s"] = max(spans[-1]["end_s"], hi)
        else:
            spans.append({"start_s": lo, "end_s": max(hi, lo)})
    return spans


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
        spans = occurrence_spans(probs, int(cls), options.threshold, start_s, window_s, duration_s)
        matches.append(Match(labels[cls], float(scores[cls]), float(start_s[first]),
                             float(max(end, start_s[first])), spans=spans))
    timeline = None
    if options.timeline:  # exact here; SongResult.to_dict rounds it with the matches
        timeline = Timeline(window_s, start_s.tolist(), [labels[c] for c in top],
                            probs[:, top].T.astype(np.float64).tolist())
    return matches, timeline


def merge_spans(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping spans merged, in time order."""
    merged: list[tuple[float, float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged
