"""serving.verify_align: the building blocks of the peak verifier, against plain references."""

from __future__ import annotations

import numpy as np
import pytest

from serving.verify_align import SongPeaks, _max_filter, log_spectrogram, verify
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
