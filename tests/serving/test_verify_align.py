"""serving.verify_align: the building blocks of the peak verifier, against plain references."""

from __future__ import annotations

import numpy as np
import pytest

from serving.verify_align import (
    NO_SCORE,
    Alignment,
    SongPeaks,
    _max_filter,
    log_spectrogram,
    matched_frames,
    regrid_score,
    verify,
    verify_window,
)
from tests.serving.retrieval_helpers import song_from, synth_record

RATE = 16000


def _brute_max_filter(x: np.ndarray, frames: int, bands: int) -> np.ndarray:
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        for b in range(x.shape[1]):
            out[t, b] = x[max(0, t - frames):t + frames + 1, max(0, b - bands):b + bands + 1].max()
    return out


@pytest.mark.parametrize("shape, frames, bands", [((40, 12), 3, 2), ((40, 12), 1, 1), ((3, 5), 4, 6), ((1, 1), 2, 2)])
def test_max_filter_is_the_neighbourhood_maximum(shape: tuple[int, int], frames: int, bands: int) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert np.array_equal(_max_filter(x, frames, bands), _brute_max_filter(x, frames, bands))


def test_verify_takes_a_spectrogram_or_its_peaks() -> None:
    record = synth_record(3)
    spec = log_spectrogram(song_from(record, 2.0, 12.0, 1.05, [1.0], 12.0), RATE)
    args = (60 * 256 / RATE, log_spectrogram(record, RATE), RATE, 1.1, 1.0, 1.12)
    align = verify(spec[60:560], *args)
    assert align.score > 15 and align == verify(SongPeaks.of(spec[60:560]), *args)


def test_a_fit_verified_again_on_its_matched_part_scores_higher() -> None:
    """A segment that holds the record in its first half only: the fit marks that half, and verifying the half
    again (as retrieval does with the best fit) is not diluted by the unrelated rest."""
    record, other = synth_record(3), synth_record(9)
    song = song_from(record, 2.0, 5.0, 1.0, [1.0], 8.0) + song_from(other, 0.0, 3.5, 1.0, [4.5], 8.0)
    spec = log_spectrogram(song, RATE)
    offset = 2.0 - 1.0  # record time - song time at speed 1
    first = verify(spec, 0.0, log_spectrogram(record, RATE), RATE, offset, 1.0, 1.12)
    assert first.song_lo_s is not None and first.song_hi_s is not None
    assert abs(first.song_lo_s - 1.0) < 0.5 and abs(first.song_hi_s - 4.0) < 0.5
    lo, hi = verify_window(first.song_lo_s, first.song_hi_s, 8.0)
    a, b = int(lo * RATE / 256), int(hi * RATE / 256)
    again = verify(spec[a:b], a * 256 / RATE, log_spectrogram(record, RATE), RATE, first.offset_s, first.speed, 1.12)
    assert again.score > first.score and abs(again.offset_s - offset) < 0.05


def test_the_second_grid_keeps_a_true_match_high_and_a_chance_one_low() -> None:
    """The fit verified again half a frame later: a record that is in the song scores on the second grid about as
    high as on the first, one that is not stays at chance; no matched part leaves the score as it is."""
    record, other = synth_record(3), synth_record(9)
    song = song_from(record, 2.0, 5.0, 1.0, [1.0], 8.0)
    spec = log_spectrogram(song, RATE)
    means = []
    for rec in (record, other):
        ref = log_spectrogram(rec, RATE)
        fit = verify(spec, 0.0, ref, RATE, 1.0, 1.0, 1.12)
        means.append(regrid_score(song, fit, ref, RATE, 1.12))
        assert means[-1] >= 0.9 * fit.score, (fit.score, means[-1])
    assert means[0] > 8.0 and means[1] < 6.0 and means[0] > means[1] + 3.0, means
    bare = Alignment(5.0, 1.0, 0.0)
    assert matched_frames(bare, 8.0, RATE) is None
    assert regrid_score(song, bare, log_spectrogram(record, RATE), RATE, 1.12) == 5.0
    failed = Alignment(NO_SCORE, 1.0, 0.0, 1.0, 4.0)
    assert regrid_score(song, failed, log_spectrogram(record, RATE), RATE, 1.12) == NO_SCORE
