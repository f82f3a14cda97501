"""A candidate's raw score: its peak z-score plus its landmark votes above the song's chance level."""

from __future__ import annotations

import numpy as np

from serving.verified import LANDMARK_WEIGHT, Song, Verified
from serving.verify_align import NO_SCORE, Alignment
from serving.voting import Occurrence, RecordVotes


def _candidate(z: float, votes: float, chance: float) -> Verified:
    occurrence = Occurrence(0, 0, 0.0, np.arange(3))
    song = Song(np.zeros(3), np.zeros(16000, np.float32), 16000, np.zeros((10, 4)), landmark_chance=chance)
    return Verified(RecordVotes(0, 3, [occurrence]), occurrence, Alignment(z, 1.0, 0.0), (0.0, 1.0), song,
                    np.zeros((10, 4)), landmark=votes)


def test_votes_at_or_below_the_chance_level_add_nothing() -> None:
    """A long record of a large catalogue wins more chance votes than the sampled one (bench/NOTES.md #36): at
    chance level the peak z-score alone ranks them."""
    chance = 3.0  # the runners-up won about 9 votes
    long_record, sampled = _candidate(5.0, 9.0, chance), _candidate(6.0, 4.0, chance)
    assert long_record.raw == 5.0 and sampled.raw == 6.0
    assert _candidate(5.0, 9.0, 0.0).raw > _candidate(6.0, 4.0, 0.0).raw  # counted whole, the long record wins


def test_votes_above_the_chance_level_count_by_their_excess() -> None:
    assert np.isclose(_candidate(6.0, 25.0, 3.0).raw, 6.0 + LANDMARK_WEIGHT * 2.0)
    assert np.isclose(_candidate(6.0, 25.0, 0.0).raw, 6.0 + LANDMARK_WEIGHT * 5.0)  # no landmarks: no chance level


def test_a_failed_alignment_has_no_score_whatever_its_votes() -> None:
    assert _candidate(NO_SCORE, 100.0, 0.0).raw == NO_SCORE
