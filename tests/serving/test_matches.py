"""Song scores, top-k, spans and threshold on synthetic probability arrays."""

from __future__ import annotations

import numpy as np

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
    assert len(tl.scores) == 2 and len(tl.scores[0]) == 8 and tl.scores[0][4] == 0.9
    d = SongResult("x", 8.5, [], None, tl).to_dict()
    assert set(d) == {"path", "duration_s", "matches", "error", "timeline"}
    assert set(SongResult("x").to_dict()) == {"path", "duration_s", "matches", "error"}
