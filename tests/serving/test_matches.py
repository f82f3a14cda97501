"""Song scores, top-k, spans and threshold on synthetic probability arrays."""

from __future__ import annotations

import json

import numpy as np

from serving.contract import SCORE_DECIMALS
from serving.matches import MatchOptions, SongResult, match_song, song_scores, span_windows

LABELS = ("a", "b", "c")
SR = 10
WINDOW_S = 2.0  # 20 samples at SR
STARTS = np.arange(8) * 10  # hop 1 s


def _probs() -> np.ndarray:
    p = np.full((8, 3), 0.1, np.float32)
    p[:, 0] = 0.8  # "a" ranks first by default
    p[3:6] = [0.2, 0.7, 0.1]  # "b" ranks first in windows 3..5
    p[4, 1] = 0.9
    p[4, 0] = 0.05
    return p


def test_song_score_is_max_over_windows() -> None:
    np.testing.assert_allclose(song_scores(_probs()), [0.8, 0.9, 0.1])


def test_span_is_run_of_first_rank_around_peak() -> None:
    assert span_windows(_probs(), 1, None) == (3, 5)
    assert span_windows(_probs(), 0, None) == (0, 2)  # the peak is window 0 (first max)


def test_threshold_extends_span() -> None:
    p = _probs()
    p[2, 1] = 0.6  # b scores >= 0.5 in window 2 though "a" ranks first there
    assert span_windows(p, 1, 0.5) == (2, 5)


def test_match_song_top_k_order_and_times() -> None:
    matches, timeline = match_song(_probs(), STARTS, 8.5, LABELS, WINDOW_S, SR, MatchOptions(top_k=2))
    assert [m.sample for m in matches] == ["b", "a"]
    assert (matches[0].start_s, matches[0].end_s) == (3.0, 7.0)
    assert matches[0].score == np.float32(0.9)
    assert timeline is None


def test_span_end_clipped_to_duration() -> None:
    matches, _ = match_song(_probs(), STARTS, 8.5, ("a", "b", "c"), WINDOW_S, SR, MatchOptions(top_k=3))
    assert all(m.end_s <= 8.5 for m in matches)
    p = np.tile([[0.9, 0.05, 0.05]], (1, 1)).astype(np.float32)
    short, _ = match_song(p, np.array([0]), 0.05, LABELS, WINDOW_S, SR, MatchOptions())
    assert (short[0].start_s, short[0].end_s) == (0.0, 0.05)


def test_threshold_gives_no_known_sample() -> None:
    flat = np.full((4, 3), 1 / 3, np.float32)
    matches, _ = match_song(flat, STARTS[:4], 5.0, LABELS, WINDOW_S, SR, MatchOptions(top_k=3, threshold=0.5))
    assert matches == []
    some, _ = match_song(_probs(), STARTS, 8.5, LABELS, WINDOW_S, SR, MatchOptions(top_k=3, threshold=0.85))
    assert [m.sample for m in some] == ["b"]


def test_timeline_compact() -> None:
    _, tl = match_song(_probs(), STARTS, 8.5, LABELS, WINDOW_S, SR, MatchOptions(top_k=2, timeline=True))
    assert tl is not None and tl.samples == ["b", "a"] and len(tl.start_s) == 8
    assert len(tl.scores) == 2 and len(tl.scores[0]) == 8 and tl.scores[0][4] == np.float32(0.9)
    d = SongResult("x", 8.5, [], None, tl).to_dict()
    assert d["timeline"]["scores"][0][4] == 0.9  # rounded at output
    assert set(d) == {"path", "duration_s", "matches", "error", "timeline"}
    assert set(SongResult("x").to_dict()) == {"path", "duration_s", "matches", "error"}


def _looped(period_s: int, loops: int, sample_from: int, sample_to: int) -> tuple[np.ndarray, np.ndarray]:
    """Window probs of a song that repeats a ``period_s`` pattern ``loops`` times; "a" sounds in
    [sample_from, sample_to) of each period, "b" ranks first elsewhere (1 s windows at a 0.5 s hop)."""
    hop = SR // 2
    starts = np.arange(0, period_s * loops * SR - SR + 1, hop)  # [N] samples
    t = (starts / SR) % period_s  # [N] seconds into the period
    probs = np.where(((t >= sample_from) & (t + 1 <= sample_to))[:, None], [0.8, 0.15, 0.05], [0.1, 0.7, 0.2])
    return probs.astype(np.float32), starts


def test_a_looped_sample_reports_every_occurrence() -> None:
    probs, starts = _looped(20, 15, 5, 11)  # a 20 s song tiled 15 times
    matches, _ = match_song(probs, starts, 300.0, LABELS, 1.0, SR, MatchOptions(top_k=1))
    spans = matches[0].spans
    assert len(spans) == 15
    assert spans[0] == {"start_s": 5.0, "end_s": 11.0} and spans[14] == {"start_s": 285.0, "end_s": 291.0}
    assert {"start_s": matches[0].start_s, "end_s": matches[0].end_s} in spans  # the best one is among them


def test_one_stray_window_does_not_split_an_occurrence() -> None:
    probs, starts = _looped(20, 2, 5, 15)
    probs[14] = [0.3, 0.6, 0.1]  # window at 7.0 s ranks "b"
    matches, _ = match_song(probs, starts, 40.0, LABELS, 1.0, SR, MatchOptions(top_k=1))
    assert [s["start_s"] for s in matches[0].spans] == [5.0, 25.0]


def test_json_is_rounded_once_by_the_contract_rule() -> None:
    rate = 16000
    starts = np.array([0, 8000, 16000, 24001])  # the last window aligned to the end: 1.5000625 s
    probs = np.array([[0.1234567, 0.8765433, 0.0]] * 4, np.float32)
    matches, tl = match_song(probs, starts, 2.5000625, LABELS, 1.0, rate, MatchOptions(top_k=2, timeline=True))
    d = json.loads(json.dumps(SongResult("x", 2.5000625, matches, None, tl).to_dict()))
    scores = [m["score"] for m in d["matches"]] + [v for row in d["timeline"]["scores"] for v in row]
    assert all(round(v, SCORE_DECIMALS) == v for v in scores)
    best = d["matches"][0]
    assert best["start_s"] == d["timeline"]["start_s"][0] and best["end_s"] == d["duration_s"] == 2.5
    assert d["timeline"]["start_s"][-1] == 1.5
