"""The landmark index: speed- and pitch-invariant triplets name the sampled record and where it sits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from serving.catalogue_format import CatalogueError
from serving.landmarks import RES, LandmarkIndex, LandmarkVotes
from serving.verify_align import log_spectrogram
from tests.serving.retrieval_helpers import song_from, synth_record

RATE = 16000
SEEDS = (5, 6, 7, 8)


def _spec(wave: np.ndarray) -> np.ndarray:
    return log_spectrogram(wave, RATE, RES)


@pytest.fixture(scope="module")
def records() -> list[np.ndarray]:
    return [synth_record(seed, seconds=30.0) for seed in SEEDS]


@pytest.fixture(scope="module")
def index(records: list[np.ndarray]) -> LandmarkIndex:
    found = LandmarkIndex()
    for i, wave in enumerate(records):
        found.add(i, _spec(wave))
    return found


def _pitch_only(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Pitch up by ``semitones`` at the same tempo: resample (pitch and speed change), then take each 50 ms
    grain of the output from the same instant of the sped-up signal (a crude granular time-stretch)."""
    ratio = 2 ** (semitones / 12)
    fast = soxr.resample(wave, RATE, RATE / ratio).astype(np.float32)  # pitch and speed x ratio
    grain = int(0.05 * RATE)
    out = np.zeros(wave.shape[0], np.float32)
    for start in range(0, wave.shape[0] - grain, grain):  # each output grain from the fast signal's same instant
        src = int(start / ratio)
        piece = fast[src:src + grain]
        out[start:start + piece.shape[0]] += piece
    return out


@pytest.mark.parametrize("factor", [1.0, 0.8, 0.94, 1.12, 1.25])
def test_the_sampled_record_and_its_place_are_found_at_another_speed(records: list[np.ndarray], index: LandmarkIndex,
                                                                  factor: float) -> None:
    song = song_from(records[2], 12.0, 17.0, factor, [2.0, 10.0], 20.0, noise=0.02)  # looped twice
    votes = index.search(_spec(song), len(records), RATE)
    assert votes.best(1) == [2]
    assert votes.counts[2] > 1.3 * max(votes.counts[i] for i in (0, 1, 3))
    place = votes.places[2]
    assert abs(np.log(place.speed / factor)) < np.log(1.12)  # within the catalogue step that verify() refines
    at = 2.0 if place.song_lo_s < 8.0 else 10.0  # which loop the best bin lies in
    record_at = place.speed * (at + 1.0 + place.offset_s)  # record time one second into that loop
    assert abs(record_at - (12.0 + factor * 1.0)) < 0.35


def test_a_pitch_only_shift_keeps_the_keys(records: list[np.ndarray], index: LandmarkIndex) -> None:
    song = np.zeros(12 * RATE, np.float32)
    piece = _pitch_only(records[1][5 * RATE:11 * RATE], 2.0)
    song[2 * RATE:2 * RATE + piece.shape[0]] += 0.5 * piece
    votes = index.search(_spec(song), len(records), RATE)
    assert votes.best(1) == [1]


def test_an_excluded_record_gets_no_vote(records: list[np.ndarray], index: LandmarkIndex) -> None:
    song = song_from(records[0], 3.0, 9.0, 1.0, [1.0], 10.0)
    votes = index.search(_spec(song), len(records), RATE, exclude=0)
    assert votes.counts[0] == 0 and 0 not in votes.places


def test_the_chance_level_is_the_median_of_the_runners_up() -> None:
    """Records ranked 2nd to 6th, in square-root votes: the best may be the sampled record, and one more may be
    sampled too."""
    assert LandmarkVotes(np.array([30.0, 0.0, 9.0, 9.0, 4.0, 4.0, 1.0]), {}).chance() == 2.0
    assert LandmarkVotes(np.array([30.0, 16.0]), {}).chance() == 4.0
    assert LandmarkVotes(np.array([30.0]), {}).chance() == 0.0  # one record: no runner-up to learn chance from


def test_a_sampled_record_stands_far_above_the_chance_level(records: list[np.ndarray], index: LandmarkIndex) -> None:
    votes = index.search(_spec(song_from(records[3], 4.0, 10.0, 1.06, [1.0, 8.0], 16.0, noise=0.02)), len(records), RATE)
    assert votes.best(1) == [3] and np.sqrt(votes.counts[3]) > 2 * votes.chance()


def test_silence_votes_for_nothing(index: LandmarkIndex) -> None:
    votes = index.search(_spec(np.zeros(5 * RATE, np.float32)), len(SEEDS), RATE)
    assert votes.best(3) == [] and not votes.places


def test_save_load_and_a_corrupt_file(index: LandmarkIndex, tmp_path: Path) -> None:
    sha = index.save(tmp_path, "landmarks-x.npz")
    again = LandmarkIndex.load(tmp_path, "landmarks-x.npz", sha)
    assert again.size == index.size and np.array_equal(again.keys, index.keys)
    assert np.all(np.diff(again.keys.astype(np.int64)) >= 0)  # sorted: buckets are found by searchsorted
    data = bytearray((tmp_path / "landmarks-x.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "landmarks-x.npz").write_bytes(bytes(data))
    with pytest.raises(CatalogueError, match="corrupt or truncated"):
        LandmarkIndex.load(tmp_path, "landmarks-x.npz", sha)
    with pytest.raises(CatalogueError, match="missing"):
        LandmarkIndex.load(tmp_path, "landmarks-y.npz", sha)
