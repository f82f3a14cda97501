"""The classifier's default "no match" threshold, calibrated at the end of training for a stated false-accept rate.

A classifier always has a best class; ``ast-serve identify`` reports "no known sample" when a song's best score
(the contract's :func:`~serving.contract.song_scores`, max over windows) is below a threshold. Its default is
measured here, on audio that samples nothing the model knows (the **null clips**):

- every stretch of a val song outside its sample spans that holds at least one window (the song's own
  accompaniment, without the sample);
- synthesized beds of :data:`BED_SECONDS` each: drums only, drums and bass (as the demo songs are made), white
  noise at several levels, and silence.

Each null clip is scored as a song. The threshold is the lowest value that at most a share ``far`` of the null
clips reach (``score >= threshold`` is a match), so about ``far`` of songs that sample nothing known still get
a forced guess. What it costs is measured too: the share of val songs that are still correct (right top-1 at or
above the threshold). Both go into the weights file's ``train["calibration"]`` (``threshold``, ``far``,
``far_measured``, ``null_clips``, ``val_kept``), ``ast-export`` copies ``threshold`` and ``threshold_far`` into
the artifact's metadata, and ``ast-serve identify`` applies it when ``--threshold`` is not given.

With fewer than ``1 / far`` null clips the target cannot be resolved; the threshold is then just above the best
null score and a warning says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from training.data import augment as A
from training.data import synth
from training.metrics import SongSet, score_songs

__all__ = ["Calibration", "DEFAULT_FAR", "calibrate", "measure", "null_clips", "outside_spans", "pick_threshold",
           "synth_beds"]

logger = logging.getLogger(__name__)

DEFAULT_FAR = 0.01  # 1 % of songs that sample nothing known get a (wrong) match
BED_SECONDS = 12.0  # as long as the shortest demo song
BED_SEED = 0xCA1  # beds are the same on every run: the threshold depends on the model only
DRUM_BEDS = 48
DRUM_BASS_BEDS = 48
NOISE_LEVELS_DB = (-40.0, -30.0, -20.0, -12.0, -6.0, -3.0)  # white noise RMS, dBFS
NOISE_BEDS_PER_LEVEL = 3
SILENT_BEDS = 4
BED_PEAK = 0.9


@dataclass(frozen=True)
class Calibration:
    """The calibrated threshold and what it was measured on."""

    threshold: float
    far: float  # the target false-accept rate
    far_measured: float  # share of null clips at or above the threshold
    null_clips: int
    val_songs: int
    val_kept: float | None  # share of val songs still correct at the threshold (None without val songs)

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def pick_threshold(null_scores: np.ndarray, far: float) -> float:
    """The lowest threshold that at most ``floor(far * n)`` of the ``n`` null scores reach (``>=``).

    Args:
        null_scores: [n] best scores of clips that sample nothing known.
        far: target false-accept rate in (0, 1).
    """
    if not 0.0 < far < 1.0:
        raise ValueError(f"far must be in (0, 1), got {far}")
    scores = np.sort(np.asarray(null_scores, dtype=np.float64))[::-1]  # [n], best first
    if scores.size == 0:
        raise ValueError("no null scores to calibrate on")
    allowed = math.floor(far * scores.size + 1e-9)  # null clips that may pass
    # Just above the best null score that must be refused: it and every lower one fall below the threshold
    # (at most 1: a probability; a null clip scoring exactly 1.0 then passes, and far_measured says so).
    return min(1.0, float(np.nextafter(scores[min(allowed, scores.size - 1)], np.inf)))


def measure(threshold: float, null_scores: np.ndarray, val_scores: np.ndarray, val_labels: list[int],
            far: float) -> Calibration:
    """The :class:`Calibration` of ``threshold``: false accepts on the null clips, val songs kept."""
    null = np.asarray(null_scores, dtype=np.float64)
    kept = None
    if len(val_labels):
        best = val_scores.argmax(axis=1)  # [V]
        ok = (best == np.asarray(val_labels)) & (val_scores.max(axis=1) >= threshold)
        kept = float(ok.mean())
    return Calibration(threshold, far, float((null >= threshold).mean()), int(null.size), len(val_labels), kept)


def synth_beds(sample_rate: int, seconds: float = BED_SECONDS, seed: int = BED_SEED) -> list[np.ndarray]:
    """Drums-only, drums + bass, white-noise and silent clips (float32, peak :data:`BED_PEAK` or quieter)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    beds = []
    for i in range(DRUM_BEDS + DRUM_BASS_BEDS):
        bpm = float(rng.uniform(75, 110))
        mix = synth.drum_loop(rng, n, bpm, float(rng.uniform(0.0, 0.3)), sample_rate)
        if i >= DRUM_BEDS:
            mix = mix + 10 ** (rng.uniform(-9, -2) / 20) * synth.bass_line(rng, n, bpm, sr=sample_rate)
        beds.append(mix * BED_PEAK / (np.max(np.abs(mix)) + 1e-9))
    for level in NOISE_LEVELS_DB:
        beds += [A.noise(rng, n) * 10 ** (level / 20) for _ in range(NOISE_BEDS_PER_LEVEL)]
    beds += [np.zeros(n) for _ in range(SILENT_BEDS)]
    return [np.clip(b, -1.0, 1.0).astype(np.float32) for b in beds]


def outside_spans(wave: np.ndarray, spans: list[tuple[float | None, float | None]], window: int,
                  sample_rate: int) -> list[np.ndarray]:
    """The stretches of ``wave`` outside every ``(start_s, end_s)`` span that hold at least one window.

    A song without span times (the sample may be anywhere) gives nothing.
    """
    if not spans or any(s is None or e is None for s, e in spans):
        return []
    out, edge = [], 0
    for start_s, end_s in sorted(spans) + [(wave.shape[0] / sample_rate,) * 2]:
        start = int(float(start_s) * sample_rate)
        if start - edge >= window:
            out.append(wave[edge:start])
        edge = max(edge, int(math.ceil(float(end_s) * sample_rate)))
    return out


def null_clips(val_waves: list[np.ndarray], val_spans: list[list[tuple[float | None, float | None]]], window: int,
               sample_rate: int) -> list[np.ndarray]:
    """Every null clip: the val songs' stretches outside their spans, then the synthesized beds."""
    clips = [c for wave, spans in zip(val_waves, val_spans, strict=True)
             for c in outside_spans(wave, spans, window, sample_rate)]
    return clips + synth_beds(sample_rate)


def calibrate(model: torch.nn.Module, val: SongSet, null: list[np.ndarray], far: float, window: int, hop: int,
              batch_size: int, device: torch.device) -> Calibration:
    """Score the null clips and the val songs as ``ast-serve`` does, and pick the threshold for ``far``."""
    null_scores = score_songs(model, SongSet(null, [0] * len(null)), window, hop, batch_size, device).max(axis=1)
    val_scores = score_songs(model, val, window, hop, batch_size, device)
    threshold = pick_threshold(null_scores, far)
    if len(null) * far < 1:
        logger.warning("calibration: %d null clips cannot resolve a %.2g false-accept rate; the threshold is "
                       "just above the best null score", len(null), far)
    cal = measure(threshold, null_scores, val_scores, val.labels, far)
    logger.info("calibrated no-match threshold %.4f for FAR %.2g: %.2f%% of %d null clips pass, %s of %d val "
                "songs kept", cal.threshold, far, 100 * cal.far_measured, cal.null_clips,
                "n/a" if cal.val_kept is None else f"{100 * cal.val_kept:.1f}%", cal.val_songs)
    return cal

