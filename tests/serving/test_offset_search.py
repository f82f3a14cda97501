"""serving.offset_search: a song segment is found anywhere in a long record, at its speed."""

from __future__ import annotations

import numpy as np
import pytest

from serving.offset_search import RecordMap, propose
from serving.verify_align import FRAME_HOP, log_spectrogram
from tests.serving.retrieval_helpers import song_from, synth_record

RATE = 16000
FRAME_S = FRAME_HOP / RATE


@pytest.mark.parametrize("rec_lo_s, factor", [(41.0, 1.0), (7.5, 1.12), (20.0, 0.9)])
def test_the_segment_is_found_far_from_any_vote(rec_lo_s: float, factor: float) -> None:
    record = synth_record(5, seconds=60.0)
    song = song_from(record, rec_lo_s, rec_lo_s + 5.0, factor, [3.0], 12.0)  # the excerpt at song time 3 s
    spec = log_spectrogram(song, RATE)
    first = int(3.5 / FRAME_S)
    found = propose(spec[first:first + int(3.0 / FRAME_S)], first * FRAME_S, RecordMap.of(log_spectrogram(record, RATE)),
                    RATE, FRAME_HOP)
    assert found is not None
    assert abs(np.log(found.speed / factor)) < 0.05
    record_at_song_4s = found.speed * (4.0 + found.offset_s)  # record time that plays at song time 4 s
    assert abs(record_at_song_4s - (rec_lo_s + factor * 1.0)) < 0.2
    assert found.score > 6


def test_unrelated_audio_scores_far_below_the_sampled_record() -> None:
    source = synth_record(5, seconds=60.0)
    record = RecordMap.of(log_spectrogram(source, RATE))
    sampled = log_spectrogram(song_from(source, 41.0, 46.0, 1.0, [1.0], 8.0), RATE)
    other = log_spectrogram(song_from(synth_record(9), 1.0, 6.0, 1.0, [1.0], 8.0), RATE)
    right, wrong = (propose(x[90:280], 90 * FRAME_S, record, RATE, FRAME_HOP) for x in (sampled, other))
    assert right is not None and wrong is not None
    assert wrong.score < right.score - 2  # the coarse score only proposes: verify() scores the proposal finely
