"""The calibrated default "no match" threshold: its rule on synthetic scores, the null clips, and the value a
training run stores with its weights."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibrate import (
    DEFAULT_FAR,
    measure,
    null_clips,
    outside_spans,
    pick_threshold,
    synth_beds,
)

SR = 100


def test_threshold_admits_at_most_the_far_share_of_null_scores() -> None:
    rng = np.random.default_rng(0)
    null = rng.beta(2, 5, size=1000)  # scores of clips that sample nothing known
    t = pick_threshold(null, DEFAULT_FAR)
    assert (null >= t).sum() == 10  # floor(1 % of 1000)
    assert (null >= np.nextafter(t, -np.inf) - 1e-6).sum() >= 11  # the lowest such threshold


@pytest.mark.parametrize("far, passes", [(0.05, 5), (0.1, 10), (0.0999, 9)])
def test_threshold_on_a_ladder(far: float, passes: int) -> None:
    null = np.linspace(0.0, 0.99, 100)
    assert int((null >= pick_threshold(null, far)).sum()) == passes


def test_few_null_scores_put_the_threshold_just_above_the_best() -> None:
    null = np.array([0.2, 0.4, 0.3])
    t = pick_threshold(null, 0.01)
    assert 0.4 < t < 0.4 + 1e-9


def test_threshold_never_exceeds_one() -> None:
    assert pick_threshold(np.ones(10), 0.01) == 1.0


@pytest.mark.parametrize("far", [0.0, 1.0, -0.1])
def test_far_must_be_a_rate(far: float) -> None:
    with pytest.raises(ValueError):
        pick_threshold(np.ones(3), far)


def test_measure_counts_false_accepts_and_kept_val_songs() -> None:
    null = np.array([0.1, 0.2, 0.6, 0.3])
    val = np.array([[0.9, 0.1], [0.2, 0.5], [0.45, 0.55]])  # correct+sure, correct+unsure, wrong
    cal = measure(0.5, null, val, [0, 1, 0], 0.25)
    assert cal.far_measured == 0.25 and cal.null_clips == 4
    assert cal.val_songs == 3 and cal.val_kept == pytest.approx(2 / 3)
    assert measure(0.5, null, np.zeros((0, 2)), [], 0.25).val_kept is None


def test_outside_spans_keeps_stretches_of_a_window_or_more() -> None:
    wave = np.arange(20 * SR, dtype=np.float32)  # 20 s
    parts = outside_spans(wave, [(5.0, 8.0), (12.0, 13.0)], 3 * SR, SR)
    assert [(float(p[0]) / SR, len(p) / SR) for p in parts] == [(0.0, 5.0), (8.0, 4.0), (13.0, 7.0)]
    assert outside_spans(wave, [(None, None)], SR, SR) == []


def test_outside_spans_short_gaps_are_dropped() -> None:
    wave = np.zeros(10 * SR, dtype=np.float32)
    assert [len(p) for p in outside_spans(wave, [(1.0, 9.5)], 2 * SR, SR)] == []


def test_beds_are_fixed_and_cover_drums_noise_and_silence() -> None:
    a, b = synth_beds(16000, seconds=0.5), synth_beds(16000, seconds=0.5)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(x.dtype == np.float32 and x.shape == (8000,) and np.abs(x).max() <= 1.0 for x in a)
    assert sum(not x.any() for x in a) >= 1  # silence
    rate = 16000
    clips = null_clips([np.zeros(20 * rate, np.float32)], [[(5.0, 15.0)]], 4 * rate, rate)
    assert len(clips) == len(a) + 2 and len(clips[-1]) == 12 * rate  # two song stretches, then the 12 s beds

