"""What retrieval keeps of a song and of each candidate it verifies, and the candidate's raw score."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serving.landmarks import LandmarkVotes
from serving.verify_align import NO_SCORE, Alignment, SongPeaks
from serving.voting import Occurrence, RecordVotes

RANK_PENALTY = 0.0  # (z: none helps, NOTES #25) raw score = peak score - this x the candidate's rank by votes (0 = most votes)
LANDMARK_WEIGHT = 3.0  # raw score = peak z-score + this x sqrt(the record's landmark votes) above chance (NOTES #31, #38)


@dataclass
class Hits:
    """A song's k-NN search: window start times ``song_t`` ``[m]`` (seconds), neighbours ``sims``, ``ids``
    ``[m, k]``."""

    song_t: np.ndarray
    sims: np.ndarray
    ids: np.ndarray
    landmarks: LandmarkVotes | None = None  # None: the catalogue has no landmarks


@dataclass
class Verified:
    """A verified candidate record."""

    votes: RecordVotes
    occurrence: Occurrence
    alignment: Alignment
    span: tuple[float, float]  # the verified occurrence in the song (seconds)
    song: Song
    record: np.ndarray  # [T, BANDS] the record's log spectrogram, read once from the catalogue
    rank: int = 0  # by votes among the song's candidates
    checked: list[tuple[Alignment, tuple[float, float]]] = field(default_factory=list)  # occurrences[:n] verified
    landmark: float = 0.0  # the record's landmark votes (serving.landmarks)

    @property
    def raw(self) -> float:
        """The verification score, plus :data:`LANDMARK_WEIGHT` x how far the square root of the record's landmark
        votes stands above the song's chance level (none below it), less :data:`RANK_PENALTY` per place behind the
        most-voted candidate. The peaks verified on the coarse spectrogram and the triplets counted on the fine
        one are separate evidence: on dev-plus the fused score ranks the true record first more often than
        either, and weight 1-4 rank alike while 3 separates true records from null queries best
        (bench/NOTES.md #31). Votes at chance level carry no evidence: counted whole, they let long records of a
        large catalogue outscore the sampled one (#36, #38)."""
        if self.alignment.score <= NO_SCORE:
            return NO_SCORE
        above = max(float(np.sqrt(self.landmark)) - self.song.landmark_chance, 0.0)
        return self.alignment.score + LANDMARK_WEIGHT * above - RANK_PENALTY * self.rank


@dataclass
class Song:
    """What verification needs of the song being identified."""

    song_t: np.ndarray  # [m] start times of the windows that were searched
    wave: np.ndarray  # [S] the decoded song
    rate: int
    spec: np.ndarray  # [T, B] log-frequency spectrogram of the whole song
    landmark_places: dict[int, Occurrence] = field(default_factory=dict)  # record -> where its landmarks put it
    landmark_chance: float = 0.0  # landmark votes' chance level, in square-root votes (LandmarkVotes.chance)
    _peaks: dict[tuple[int, int], SongPeaks] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.wave.shape[0] / self.rate

    def peaks(self, first: int, end: int) -> SongPeaks:
        """The peaks of frames ``[first, end)``, computed once: candidates often verify the same segment."""
        if (first, end) not in self._peaks:
            self._peaks[first, end] = SongPeaks.of(self.spec[first:end])
        return self._peaks[first, end]
