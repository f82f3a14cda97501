"""Open-set calibration: how high a raw retrieval score gets on queries that sample nothing in the catalogue.

At ``index build`` (and after every ``index add``) we run *null queries* through the very same
vote-and-verify scoring that ``identify`` uses, and keep the best candidate's raw score of each:

- **leave-one-out excerpts**: from each of up to :data:`MAX_RECORDS` records, :data:`EXCERPTS_PER_RECORD`
  excerpts (one window plus :data:`EXCERPT_S` seconds), each searched with that record's own ids and landmarks
  excluded, so the best remaining candidate is by construction a wrong one. Song-like queries (a piece looped
  over synthesized drums and bass, until 2026-12-06) are no longer used: with the landmark votes in the raw
  score they scored far above real songs that sample nothing (dev-plus, 80 records: 99th percentile 22.3
  against 16.3 for the best wrong record of the 240 real songs, 17.6 for the excerpts), because the synthetic
  drum bed alone matches drum-heavy records (peak z-scores up to 20 for the bed without any piece): the
  threshold they set rejected a third of the correct answers (bench/NOTES.md #31);
- **silence and noise** (white, and brown-ish), which sample nothing at all.

The calibrated score of a raw score ``r`` is the null CDF ``F(r)``: the fraction of null queries scoring below
``r``. ``F`` interpolates linearly between the sorted null scores placed at ``i / (n + 1)``, below the smallest
with an exponential tail, and above the tail's start with an exponential tail of scale ``tau`` (at least
:data:`MIN_TAIL_SCALE`), so it is smooth, strictly increasing and < 1. With at least :data:`MIN_EXCEEDANCES`
scores in the top :data:`TAIL_FRACTION`, the tail starts at the null score below them and ``tau`` is their
mean excess over it (peaks over threshold, the exponential case): the 1 % point then rests on the top 10 % of
the nulls, not on the two largest, whose noise moved dev-plus's closed threshold by 0.6 between two
calibrations of one model (bench/NOTES.md #36). With fewer, the tail starts at the largest score and ``tau`` is
the spread of the top :data:`MIN_TAIL_POINTS`. A match is
reported when ``F(r) >= 1 - FAR``: by construction, a fraction FAR of songs that sample nothing would get a
(false) match. The default FAR is 1 %; ``identify --far`` picks another, ``--threshold T`` compares ``F(r)``
with ``T`` directly. With few null queries the 1 % point lies in the extrapolated tail: more records make the
estimate better.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from serving.catalogue_format import CatalogueError
from serving.contract import atomic_write, one_line

logger = logging.getLogger(__name__)

DEFAULT_FAR = 0.01
EXCERPT_S = 6.0  # a leave-one-out excerpt is one window plus this (about a sample's length)
EXCERPTS_PER_RECORD = 5
MAX_RECORDS = 40  # records drawn for excerpts: calibration cost stays bounded as the catalogue grows
NOISE_QUERIES = 2  # of each kind
NOISE_SECONDS = 6.0
NOISE_LEVEL = 0.1
MIN_TAIL_SCALE = 0.5  # raw-score units (peak z-score, serving.verify_align; 0.02 for the lift)
TAIL_FRACTION = 0.1  # the top 10 % of null scores set the tail's scale
MIN_TAIL_POINTS = 5
MIN_EXCEEDANCES = 10  # null scores in the top TAIL_FRACTION that a peaks-over-threshold tail needs
SEED = 0
NO_CANDIDATE = -1.0  # the raw score of a query that no record votes for (serving.verify_align.NO_SCORE)
MIN_INFORMATIVE = 5
DUPLICATE_SCORE = 15.0  # peak z-score: a wrong record verifying this well is the same music: unrelated records reach z 10 (dev-plus null max), pieces of one track 12-28 (NOTES #29)
DUPLICATE_VOTES = 40.0  # landmark votes in one bin: the same sound in two records (a jingle, a thunder clap) even where the peak z stays low; unrelated records reach 26 (NOTES #32)


@dataclass
class NullScore:
    """A null query's best candidate: its ``raw`` score (what the threshold is set on), its peak z-score alone
    (``verified``) and its landmark votes (``landmark``): the duplicate rule reads the last two apart, since the
    raw score adds them (serving.retrieval)."""

    raw: float
    verified: float
    landmark: float = 0.0

    @property
    def duplicate(self) -> bool:
        """Whether this candidate is the same music as the query's record (:data:`DUPLICATE_SCORE`,
        :data:`DUPLICATE_VOTES`)."""
        return self.verified >= DUPLICATE_SCORE or self.landmark >= DUPLICATE_VOTES


ScoreFn = Callable[[np.ndarray, "tuple[int, int] | None"], NullScore]


@dataclass
class Calibration:
    """The null distribution of raw scores and the decision threshold it gives."""

    null_scores: list[float]
    far: float = DEFAULT_FAR
    threshold: float = 1.0 - DEFAULT_FAR  # calibrated score needed for a match
    raw_threshold: float = 0.0
    tail_scale: float = MIN_TAIL_SCALE
    generation: str = ""
    queries: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores: list[float], far: float = DEFAULT_FAR, generation: str = "",
                    queries: dict[str, int] | None = None) -> Calibration:
        if not scores:
            raise ValueError("calibration needs at least one null score")
        null = sorted(float(s) for s in scores)
        cal = cls(null, far, 1.0 - far, 0.0, MIN_TAIL_SCALE, generation, queries or {})
        start, _ = cal.tail_start()
        top = np.asarray(null[-max(MIN_TAIL_POINTS, int(len(null) * TAIL_FRACTION)):])
        spread = top.mean() - start if start < null[-1] else top.std()  # mean excess, or the top's spread
        cal.tail_scale = max(MIN_TAIL_SCALE, float(spread))
        cal.raw_threshold = cal.raw_for(1.0 - far)
        return cal

    def tail_start(self) -> tuple[float, float]:
        """Where the upper exponential tail starts: ``(raw score, its level)`` (see the module docstring)."""
        z, n = self.null_scores, len(self.null_scores)
        k = int(n * TAIL_FRACTION)
        if k >= MIN_EXCEEDANCES and n > k:
            return z[n - k - 1], (n - k) / (n + 1)
        return z[-1], n / (n + 1)

    def score(self, raw: float) -> float:
        """The calibrated score ``F(raw)`` in (0, 1) (see the module docstring)."""
        z, n, tau = np.asarray(self.null_scores), len(self.null_scores), self.tail_scale
        step = 1.0 / (n + 1)
        start, level = self.tail_start()
        if raw >= start:
            return 1.0 - (1.0 - level) * math.exp(-(raw - start) / tau)
        if raw <= z[0]:
            return step * math.exp((raw - z[0]) / tau)
        levels = np.arange(1, n + 1) * step
        return float(np.interp(raw, z, levels))

    def raw_for(self, level: float) -> float:
        """The raw score whose calibrated score is ``level`` (the inverse of :meth:`score`)."""
        z, n, tau = self.null_scores, len(self.null_scores), self.tail_scale
        step = 1.0 / (n + 1)
        level = min(max(level, 1e-12), 1.0 - 1e-12)
        start, start_level = self.tail_start()
        if level >= start_level:
            return start + tau * math.log((1.0 - start_level) / (1.0 - level))
        if level <= step:
            return z[0] + tau * math.log(level / step)
        return float(np.interp(level, np.arange(1, n + 1) * step, z))

    def threshold_for(self, far: float | None, threshold: float | None) -> float:
        """The calibrated-score threshold: ``threshold`` if given, else ``1 - far`` (default: the stored FAR)."""
        if threshold is not None:
            return threshold
        return 1.0 - (self.far if far is None else far)


def save_calibration(folder: str | os.PathLike, cal: Calibration, name: str) -> None:
    text = json.dumps(asdict(cal), indent=1).encode("utf-8")
    atomic_write(Path(folder) / name, lambda handle: handle.write(text))


def load_calibration(folder: str | os.PathLike, name: str, generation: str) -> Calibration:
    """Read the calibration; one that belongs to another write of the catalogue is used with a warning."""
    path = Path(folder) / name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        cal = Calibration(**raw)
        if not cal.null_scores or not all(isinstance(x, (int, float)) for x in cal.null_scores):
            raise ValueError("no null scores")
    except FileNotFoundError as err:
        raise CatalogueError(f"calibration missing: {path}; rebuild with `ast-serve index build`") from err
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:
        raise CatalogueError(f"{path} is corrupt ({one_line(err)}); rebuild with `ast-serve index build`") from err
    if cal.generation != generation:
        logger.warning("%s belongs to another write of this catalogue (interrupted?); its threshold is used "
                       "as is until the next `index add` or `index build`", path)
    return Calibration.from_scores(cal.null_scores, cal.far, cal.generation, cal.queries)  # the tail: today's rule


@dataclass
class NullQuery:
    """One calibration query: audio, and the id range of the record it came from (excluded from search)."""

    kind: str
    wave: np.ndarray
    exclude: tuple[int, int] | None = None


def null_queries(count: int, audio: Callable[[int], np.ndarray | None], id_range: Callable[[int], tuple[int, int]],
                 window: int, hop: int, sample_rate: int) -> Iterator[NullQuery]:
    """Leave-one-out excerpts from up to :data:`MAX_RECORDS` of ``count`` records, then silence and noise.

    Args:
        count: records in the catalogue.
        audio: record index -> decoded audio (None when it cannot be decoded any more: skipped).
        id_range: record index -> its ``[id_start, id_end)``.
        window: model window (samples).
        hop: catalogue hop (samples).
        sample_rate: model rate.
    """
    rng = np.random.default_rng(SEED)
    length = window + int(EXCERPT_S * sample_rate)
    chosen = sorted(rng.choice(count, min(count, MAX_RECORDS), replace=False)) if count else []
    for index in chosen:
        wave = audio(int(index))
        if wave is None:
            continue
        room = max(0, wave.shape[0] - length)
        for start in rng.integers(0, room + 1, EXCERPTS_PER_RECORD):
            yield NullQuery("excerpt", wave[start:start + length], id_range(int(index)))
    n = int(NOISE_SECONDS * sample_rate)
    for _ in range(NOISE_QUERIES):
        white = rng.standard_normal(n)
        yield NullQuery("white", (NOISE_LEVEL * white).astype(np.float32))
        brown = np.cumsum(rng.standard_normal(n))
        brown -= np.convolve(brown, np.ones(hop) / hop, mode="same")  # drift removed: stays in range
        yield NullQuery("brown", (NOISE_LEVEL * brown / (np.abs(brown).max() + 1e-9)).astype(np.float32))
    yield NullQuery("silence", np.zeros(n, dtype=np.float32))


def calibrate(score: ScoreFn, queries: Iterator[NullQuery], far: float = DEFAULT_FAR,
              generation: str = "") -> Calibration:
    """Score every null query with ``score(wave, exclude)`` and build the :class:`Calibration`.

    A leave-one-out query whose best *other* record verifies at a peak z-score of :data:`DUPLICATE_SCORE` or more,
    or gets :data:`DUPLICATE_VOTES` landmark votes or more, has found the same music or sound indexed twice (a
    track cut into several records, a reissue, a shared jingle), not a false match: it is left out of the null,
    with one warning, so that duplicates do not lift the threshold above every real match.
    """
    scores, kinds, duplicates = [], {}, 0
    for query in queries:
        found = score(query.wave, query.exclude)
        if query.exclude is not None and found.duplicate:
            duplicates += 1
            continue
        scores.append(found.raw)
        kinds[query.kind] = kinds.get(query.kind, 0) + 1
    if duplicates:
        logger.warning("%d null queries matched another record at z >= %.0f or >= %.0f landmark votes: the catalogue "
                       "holds the same music more than once; they are left out of the calibration", duplicates,
                       DUPLICATE_SCORE, DUPLICATE_VOTES)
    cal = Calibration.from_scores(scores, far, generation, kinds)
    informative = sum(s > NO_CANDIDATE for s in scores)
    if informative < MIN_INFORMATIVE:
        logger.warning("only %d of %d null queries reached verification: the threshold is a rough estimate "
                       "(index more records)", informative, len(scores))
    logger.info("calibrated on %d null queries: raw threshold %.3f for a %.1f %% false-accept rate",
                len(scores), cal.raw_threshold, 100 * far)
    return cal
