"""Identify by retrieval: song windows -> k-NN in the catalogue -> time-consistent votes -> verification -> matches.

For each song (decoded whole, at the model's rate):

1. windows every catalogue hop (<= 0.5 s) are embedded with the exported graph (:mod:`serving.embedding`);
2. each window's :data:`DEFAULT_K` nearest catalogue windows are found (:mod:`serving.vectors`);
3. hits vote in (record, time-scale, offset) and runs of consecutive agreeing windows become occurrences
   (:mod:`serving.voting`); the :data:`CANDIDATES` records with the most votes are kept;
4. each candidate's best occurrences, and the place its landmarks give it, are **verified** against the
   record's log-frequency spectrogram, which the catalogue stores (:mod:`serving.spectra`; no record audio is
   read), by matching spectral peaks over a fine grid of speeds and lags (:mod:`serving.verify_align`), the
   best fit once more on the song part it matched; the best peak score, plus the record's landmark votes
   (:mod:`serving.landmarks`), is the candidate's *raw score* (:class:`~serving.verified.Verified`); the
   :data:`REGRID` best candidates average their peak score over a second frame grid
   (:func:`~serving.verify_align.regrid_score`) and are ranked again;
5. the raw score is mapped to the **calibrated score** ``F(raw)`` in [0, 1], the null CDF measured when the
   catalogue was built (:mod:`serving.calibration`): the fraction of songs that sample nothing in the
   catalogue which would score lower. A match needs ``F(raw) >= 1 - FAR`` (FAR 1 % by default, ``--far``), or
   ``>= --threshold``; otherwise the song has no match.

Each match has ``sample`` (the record's name), ``score`` (calibrated), ``start_s``/``end_s`` (the verified
occurrence in the song), ``spans`` (every occurrence: samples loop), ``record_start_s``/``record_end_s``
(where in the record) and ``speed`` (the estimated time-scale: 1.1 = the sample plays 10 % faster than the
record). The cost per song does not grow with the catalogue beyond the k-NN search: verification only ever
touches the few candidates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from serving.calibration import NullScore
from serving.catalogue import Catalogue
from serving.catalogue_format import CatalogueError
from serving.contract import AudioError, load_audio, one_line, round_score, round_time
from serving.embedding import DEFAULT_BATCH, embed_wave
from serving.landmarks import RES, LandmarkVotes
from serving.matches import Match, SongResult, merge_spans
from serving.offset_search import propose
from serving.prefetch import prefetched
from serving.session import ModelSession
from serving.verified import Hits, Song, Verified
from serving.verify_align import (
    FRAME_HOP,
    NO_SCORE,
    Alignment,
    log_spectrogram,
    matched_frames,
    regrid_score,
    verify,
    verify_window,
)
from serving.voting import MIN_VOTES, Occurrence, RecordVotes, by_record, occurrences, placed

logger = logging.getLogger(__name__)

DEFAULT_K = 32
CANDIDATES = 10  # verified per song: the true record among them for 92.2 % / 85.0 % of test / open songs (6: 90.0 / 78.3; NOTES #29)
VERIFY_OCCURRENCES = 4  # per candidate, the best-voted ones (2 -> 4: forced top-1 test +4 -0 on ret17; NOTES #46)
SEARCH_RECORD = True  # also verify where the best occurrence's song segment best sits in the whole record
SPAN_FRACTION = 0.6  # another occurrence is reported when it verifies to this fraction of the best
PIPELINE_SONGS = 2  # songs decoded and searched ahead of the one being verified
LANDMARK_CANDIDATES = 5  # the landmark search's best records, verified too when the votes did not name them (NOTES #31)
LANDMARK_PLACES = 15  # the landmark search's best records given a place: a voted candidate is verified there too (NOTES #37)
REGRID = 2  # the best candidates whose score is averaged over a second frame grid (NOTES #36)


@dataclass
class RetrievalOptions:
    """Options of retrieval.

    Attributes:
        k: neighbours per song window.
        min_votes: consecutive agreeing windows an occurrence needs (None: :func:`~serving.voting.min_votes_for`).
        candidates: records verified per song (at least ``top_k``).
        top_k: matches reported per song.
        far: false-accept rate for the threshold (None: the catalogue's calibrated default, 1 %).
        threshold: calibrated-score threshold overriding ``far``.
        batch_size: windows per inference call.
        hop_s: query hop (None: the catalogue's hop).
    """

    k: int = DEFAULT_K
    min_votes: int | None = None
    candidates: int = CANDIDATES
    top_k: int = 1
    far: float | None = None
    threshold: float | None = None
    batch_size: int = DEFAULT_BATCH
    hop_s: float | None = None


class Retriever:
    """Search, vote and verify against one opened catalogue with one model session."""

    def __init__(self, session: ModelSession, catalogue: Catalogue, options: RetrievalOptions | None = None) -> None:
        self.session, self.catalogue = session, catalogue
        self.opts = options or RetrievalOptions()
        self._corrupt: set[int] = set()
        self.rate = session.metadata.sample_rate
        meta = catalogue.meta
        self.hop = meta.hop_samples if self.opts.hop_s is None else max(1, round(self.opts.hop_s * self.rate))

    def candidates(self, wave: np.ndarray, exclude: tuple[int, int] | None = None,
                   min_votes: int | None = None) -> list[Verified]:
        """Verified candidates of a song, best raw score first (none when nothing votes consistently)."""
        return self._candidates(wave, self.search(wave, exclude), min_votes)

    def _candidates(self, wave: np.ndarray, hits: Hits | None, min_votes: int | None) -> list[Verified]:
        ranked, song = self.vote(wave, hits, min_votes)
        verified = [v for rank, rv in enumerate(ranked) if (v := self._verify(rv, song, rank)) is not None]
        if hits is not None and hits.landmarks is not None:
            for v in verified:
                v.landmark = float(hits.landmarks.counts[v.votes.record])
        verified.sort(key=lambda v: -v.raw)
        self._regrid(verified[:REGRID])
        verified.sort(key=lambda v: -v.raw)
        return verified

    def _regrid(self, best: list[Verified]) -> None:
        """Average each of ``best``'s peak scores over a second frame grid (:func:`regrid_score`)."""
        for v in best:
            score = regrid_score(v.song.wave, v.alignment, v.record, self.rate, self.catalogue.scale_ratio)
            v.alignment = replace(v.alignment, score=score)

    def search(self, wave: np.ndarray, exclude: tuple[int, int] | None = None) -> Hits | None:
        """Embed the song's windows and find their neighbours (None: no window, or an empty catalogue): the
        part of identify that runs the model, so a pipeline can run it ahead of verification."""
        starts, emb = embed_wave(self.session, wave, self.hop, self.opts.batch_size)
        if emb.shape[0] == 0 or self.catalogue.store.ntotal == 0:
            return None
        k = min(self.opts.k, self.catalogue.store.ntotal)
        sims, ids = self.catalogue.store.search(emb, k, exclude)  # [m, k]
        return Hits(starts / self.rate, sims, ids, self._landmarks(wave, exclude))

    def _landmarks(self, wave: np.ndarray, exclude: tuple[int, int] | None) -> LandmarkVotes | None:
        """The song's landmark votes (None: the catalogue has no landmarks); ``exclude``'s record gets none."""
        index = self.catalogue.landmarks
        if index is None:
            return None
        records = self.catalogue.meta.records
        left_out = None if exclude is None else next((i for i, r in enumerate(records) if r.id_start == exclude[0]),
                                                     None)  # calibration only: identify scans no records
        return index.search(log_spectrogram(wave, self.rate, RES), len(records), self.rate, left_out,
                            max(LANDMARK_PLACES, LANDMARK_CANDIDATES))

    def voted(self, wave: np.ndarray, exclude: tuple[int, int] | None = None,
              min_votes: int | None = None) -> tuple[list[RecordVotes], Song | None]:
        """The candidate records by votes, most first, and the song as verification sees it (None: no votes)."""
        return self.vote(wave, self.search(wave, exclude), min_votes)

    def vote(self, wave: np.ndarray, hits: Hits | None,
             min_votes: int | None = None) -> tuple[list[RecordVotes], Song | None]:
        """:meth:`voted` from the song's :meth:`search`."""
        if hits is None:
            return [], None
        found = occurrences(hits.song_t, hits.sims, hits.ids, self.catalogue.table, self.catalogue.scales,
                            self.rate, self.hop / self.rate, self.opts.min_votes if min_votes is None else min_votes)
        ranked = by_record(found, max(self.opts.candidates, self.opts.top_k))
        places = self._landmark_places(hits)
        ranked += self._landmark_candidates(hits, places, {rv.record for rv in ranked})
        if not ranked:
            return [], None
        chance = 0.0 if hits.landmarks is None else hits.landmarks.chance()
        return ranked, Song(hits.song_t, wave, self.rate, log_spectrogram(wave, self.rate), places, chance)  # one STFT

    @staticmethod
    def _landmark_candidates(hits: Hits, places: dict[int, Occurrence], voted: set[int]) -> list[RecordVotes]:
        """The landmark search's best records that the votes did not name, each with its landmark place as its
        one occurrence (no votes)."""
        if hits.landmarks is None:
            return []
        return [RecordVotes(r, 0, [places[r]]) for r in hits.landmarks.best(LANDMARK_CANDIDATES)
                if r not in voted and r in places]

    def _landmark_places(self, hits: Hits) -> dict[int, Occurrence]:
        """Where the landmark search's best records sit: one occurrence each, where the record's best landmark bin
        puts it (exact speed; the song windows its triplets span)."""
        if hits.landmarks is None:
            return {}
        window_s, scales = self.session.metadata.window_s, self.catalogue.scales
        return {r: placed(r, (p.speed, p.offset_s), (p.song_lo_s, p.song_hi_s), hits.song_t, window_s, scales)
                for r, p in hits.landmarks.places.items()}

    def _record(self, index: int) -> np.ndarray | None:
        """The record's log spectrogram ``[T, BANDS]``, from the catalogue (no record audio is read); None, with
        one warning per run, when its stored frames are corrupt (the candidate is skipped)."""
        try:
            return self.catalogue.spectra.get(index)
        except CatalogueError as err:
            if index not in self._corrupt:
                self._corrupt.add(index)
                logger.warning("%s (record %r is not verified)", err, self.catalogue.meta.records[index].name)
            return None

    def _verify(self, rv: RecordVotes, song: Song, rank: int = 0) -> Verified | None:
        record = self._record(rv.record)
        if record is None:
            return None
        tried = [(occ, self._verify_one(occ, record, song)) for occ in rv.occurrences[:VERIFY_OCCURRENCES]]
        checked = [fit for _, fit in tried]
        if SEARCH_RECORD and rv.occurrences:
            tried.append((rv.occurrences[0], self._searched(rv, record, song)))
        landmark = song.landmark_places.get(rv.record)
        if landmark is not None and all(landmark is not occ for occ, _ in tried):  # each place verified once
            tried.append((landmark, self._verify_one(landmark, record, song)))
        if not tried:
            return None
        occurrence, fit = max(tried, key=lambda t: t[1][0].score)  # the first of equal bests
        return Verified(rv, occurrence, *self._refit(*fit, record, song), song, record, rank, checked)

    def _refit(self, align: Alignment, span: tuple[float, float], record: np.ndarray,
               song: Song) -> tuple[Alignment, tuple[float, float]]:
        """The best fit verified again on the part of the song it matched (at least
        :data:`~serving.verify_align.MIN_VERIFY_S`, as every segment): a segment that straddles a loop's repeat
        matches in part, and the rest dilutes its score (bench/NOTES.md #35)."""
        frames = matched_frames(align, song.duration_s, self.rate)
        if frames is None:
            return align, span
        return self._verified(song, frames, record, (align.offset_s, align.speed), span)

    def _searched(self, rv: RecordVotes, record: np.ndarray, song: Song) -> tuple[Alignment, tuple[float, float]]:
        """The best occurrence's song segment verified where the whole-record search puts it
        (:mod:`serving.offset_search`); a failed alignment when the segment has too few peaks."""
        span, (first, end) = self._segment(rv.occurrences[0], song)
        found = propose(song.spec[first:end], first * FRAME_HOP / self.rate,
                        self.catalogue.spectra.search_map(rv.record), self.rate, FRAME_HOP)
        if found is None:
            return Alignment(NO_SCORE, 1.0, 0.0), span
        return self._verified(song, (first, end), record, (found.offset_s, found.speed), span)

    def _verify_one(self, occ: Occurrence, record: np.ndarray, song: Song) -> tuple[Alignment, tuple[float, float]]:
        """Verify one occurrence; the span is the part of the song the record matches (else the votes' span)."""
        span, frames = self._segment(occ, song)
        place = (occ.offset_s, occ.speed or float(self.catalogue.scales[occ.scale_index]))
        return self._verified(song, frames, record, place, span)

    def _segment(self, occ: Occurrence, song: Song) -> tuple[tuple[float, float], tuple[int, int]]:
        """The occurrence's span in the song (seconds) and the song frames ``[first, end)`` verified for it."""
        frame_s = FRAME_HOP / self.rate
        lo, hi = self._span(occ, song)
        vlo, vhi = verify_window(lo, hi, song.duration_s)
        first = int(vlo / frame_s)
        return (lo, hi), (first, max(first + 1, int(vhi / frame_s)))

    def _verified(self, song: Song, frames: tuple[int, int], record: np.ndarray, place: tuple[float, float],
                  span: tuple[float, float]) -> tuple[Alignment, tuple[float, float]]:
        """Verify song ``frames`` against ``record`` at ``place`` (offset, speed); the span is the part of the song
        that the record matches, else ``span``."""
        first, end = frames
        align = verify(song.peaks(first, end), first * FRAME_HOP / self.rate, record, self.rate, *place,
                       self.catalogue.scale_ratio)
        if align.song_lo_s is not None and align.song_hi_s is not None:
            span = (align.song_lo_s, min(align.song_hi_s, song.duration_s))
        return align, span

    def _span(self, occ: Occurrence, song: Song) -> tuple[float, float]:
        window_s = self.session.metadata.window_s
        lo = float(song.song_t[occ.windows[0]])
        return lo, min(float(song.song_t[occ.windows[-1]]) + window_s, song.duration_s)

    def null_score(self, wave: np.ndarray, exclude: tuple[int, int] | None = None) -> NullScore:
        """Calibration's view of a null query: the best candidate's raw score and its peak z-score
        (:data:`NO_SCORE` both without one).

        Null queries vote with the least agreement (:data:`~serving.voting.MIN_VOTES` windows), so nearly every
        one yields a wrong candidate to verify: the null distribution is that of verified wrong candidates, a
        conservative estimate of what a song that samples nothing can score.
        """
        found = self.candidates(wave, exclude, MIN_VOTES)
        if not found:
            return NullScore(NO_SCORE, NO_SCORE)
        return NullScore(found[0].raw, found[0].alignment.score, found[0].landmark)

    def matches(self, wave: np.ndarray) -> list[Match]:
        """Matches of one song above the threshold, best first."""
        return self.answer(wave, self.search(wave))

    def answer(self, wave: np.ndarray, hits: Hits | None) -> list[Match]:
        """:meth:`matches` from the song's :meth:`search` (a pipeline runs it ahead)."""
        cal = self.catalogue.calibration
        threshold = cal.threshold_for(self.opts.far, self.opts.threshold)
        out = []
        for cand in self._candidates(wave, hits, None):
            score = cal.score(cand.raw)
            if score < threshold or len(out) >= self.opts.top_k:
                break
            out.append(self._match(cand, score))
        return out

    def _spans(self, cand: Verified) -> list[tuple[float, float]]:
        """Every occurrence of the matched record that verifies (at least :data:`SPAN_FRACTION` of the best) at
        the best one's speed, within a catalogue scale step: a loop repeats its sample at one speed."""
        spans = [cand.span]
        for i, occ in enumerate(cand.votes.occurrences):
            if occ is cand.occurrence:
                continue
            align, span = (cand.checked[i] if i < len(cand.checked)
                           else self._verify_one(occ, cand.record, cand.song))
            same_speed = abs(np.log(align.speed / cand.alignment.speed)) <= np.log(self.catalogue.scale_ratio)
            if same_speed and align.score >= SPAN_FRACTION * cand.alignment.score:
                spans.append(span)
        return merge_spans(spans)

    def _match(self, cand: Verified, score: float) -> Match:
        entry = self.catalogue.meta.records[cand.votes.record]
        lo, hi = cand.span
        speed, offset = cand.alignment.speed, cand.alignment.offset_s
        rec_lo = min(max(0.0, speed * (lo + offset)), entry.duration_s)
        rec_hi = min(max(rec_lo, speed * (hi + offset)), entry.duration_s)
        return Match(entry.name, round_score(score), round_time(lo), round_time(hi),
                     spans=[{"start_s": round_time(a), "end_s": round_time(b)} for a, b in self._spans(cand)],
                     record_start_s=round_time(rec_lo), record_end_s=round_time(rec_hi),
                     speed=round(speed, 3))


@dataclass
class _Decoded:
    """A song as the pipeline's producer hands it over: decoded and searched, or the file's error."""

    shown: str
    duration: float | None = None
    wave: np.ndarray | None = None
    hits: Hits | None = None
    error: str | None = None


def _decoded(retriever: Retriever, paths: list) -> Iterator[_Decoded]:
    """Decode and search each path (the producer's half of :func:`identify_indexed`)."""
    from serving.identify import display_path

    for path in paths:
        shown = display_path(path)
        try:
            wave = load_audio(path, retriever.rate)
        except AudioError as err:
            yield _Decoded(shown, error=str(err))
            continue
        if wave.shape[0] == 0:
            yield _Decoded(shown, 0.0, error="contains no audio samples")
            continue
        duration = round_time(wave.shape[0] / retriever.rate)
        try:
            yield _Decoded(shown, duration, wave, retriever.search(wave))
        except (RuntimeError, ValueError, MemoryError) as err:  # an ORT or FAISS failure costs this file only
            yield _Decoded(shown, duration, error=f"retrieval failed: {one_line(err)}")


def identify_indexed(session: ModelSession, catalogue: Catalogue, paths: list,
                     options: RetrievalOptions | None = None) -> Iterator[SongResult]:
    """One :class:`SongResult` per path, in order, answered by retrieval (decoding errors are per file).

    A producer thread decodes, embeds and searches the next songs while this one votes and verifies (numpy):
    the model's threads and verification share the cores (:mod:`serving.prefetch`)."""
    retriever = Retriever(session, catalogue, options)
    for song in prefetched(_decoded(retriever, paths), PIPELINE_SONGS, "ast-serve-search"):
        if song.wave is None:
            yield SongResult(song.shown, song.duration, error=song.error)
            continue
        try:
            yield SongResult(song.shown, song.duration, retriever.answer(song.wave, song.hits))
        except (RuntimeError, ValueError, MemoryError) as err:  # a numpy failure costs this file only
            yield SongResult(song.shown, song.duration, error=f"retrieval failed: {one_line(err)}")
