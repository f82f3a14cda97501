"""The project's one music synthesiser (numpy): boom-bap drums, bass lines, instrument patches, short clips.

Used by :mod:`training.data.demo_data` (records and songs), by :mod:`training.data.dataset` (accompaniment beds
for record cuts) and by ``bench.speed.synth`` (music-like clips for speed runs and top-1 agreement:
:func:`music_clip`). Every random draw comes from the numpy ``Generator`` passed in, so output is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000
STEPS_PER_BAR = 16
PATTERN_STEPS = 32  # two bars of sixteenth notes
A4_HZ = 440.0
A4_MIDI = 69
TWO_PI = 2.0 * np.pi
MINOR_SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor, semitones above the root
CLIP_BPM = (80.0, 140.0)
CLIP_ROOT_MIDI = (45, 60)  # chord roots, A2..B3
CLIP_PEAK = 0.8  # peak after normalisation, like mastered music below full scale
CLIP_DRUMS_DB = (-6.0, 0.0)  # drums and bass relative to the chords
CLIP_BASS_DB = (-9.0, -3.0)

Rng = np.random.Generator


def midi_hz(note: float) -> float:
    """Frequency of a (fractional) MIDI note."""
    return A4_HZ * 2.0 ** ((note - A4_MIDI) / 12.0)


def _filt(x: np.ndarray, kind: str, fc: float | list[float], order: int, sr: int) -> np.ndarray:
    """Butterworth filter (second-order sections)."""
    return signal.sosfilt(signal.butter(order, fc, btype=kind, fs=sr, output="sos"), x)


def unit_rms(x: np.ndarray) -> np.ndarray:
    """Scale to RMS 1 (silent input stays silent)."""
    return x / float(np.sqrt(np.mean(np.square(x)) + 1e-12))


# ------------------------------------------------------------------ drums
def drum_kit(rng: Rng, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthesize one (kick, snare, hat) kit: pitch-swept sine kick, noise+tone snare, high-passed noise hat."""
    t = np.arange(int(0.5 * sr)) / sr
    f_hi, f_lo = rng.uniform(100, 180), rng.uniform(40, 60)
    sweep = f_lo + (f_hi - f_lo) * np.exp(-t / rng.uniform(0.02, 0.06))
    kick = np.sin(TWO_PI * np.cumsum(sweep) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    ts = t[: int(0.25 * sr)]
    snare = (_filt(rng.standard_normal(len(ts)), "bandpass", [1000, 6000], 2, sr)
             * np.exp(-ts / rng.uniform(0.05, 0.12))
             + 0.6 * np.sin(TWO_PI * rng.uniform(160, 240) * ts) * np.exp(-ts / 0.04))
    th = t[: int(0.12 * sr)]
    hat = _filt(rng.standard_normal(len(th)), "highpass", rng.uniform(5000, 6800), 4, sr) * np.exp(
        -th / rng.uniform(0.01, 0.04))
    return kick, snare, hat


def drum_loop(rng: Rng, n: int, bpm: float, swing: float = 0.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Boom-bap loop of ``n`` samples: a random 2-bar 16-step pattern of a synthesized kit, RMS 1."""
    kit = drum_kit(rng, sr)
    steps = np.arange(PATTERN_STEPS)
    kick_on = rng.random(PATTERN_STEPS) < np.where(steps % 2 == 0, 0.25, 0.08)
    kick_on[[0, STEPS_PER_BAR]] = True
    snare_on = np.isin(steps % STEPS_PER_BAR, [4, 12]) | (rng.random(PATTERN_STEPS) < 0.04)
    hat_on = (steps % 2 == 0) | (rng.random(PATTERN_STEPS) < 0.3)
    vel = rng.uniform(0.5, 1.0, size=(3, PATTERN_STEPS))
    gains = (1.0, 0.8, 0.35)
    step = 60.0 / bpm / 4 * sr
    out = np.zeros(n + sr)
    for i in range(int(n / step) + 1):
        j = i % PATTERN_STEPS
        pos = int(round((i + (swing if i % 2 else 0.0)) * step))
        for k, on in enumerate((kick_on, snare_on, hat_on)):
            if on[j]:
                out[pos : pos + len(kit[k])] += gains[k] * vel[k, j] * kit[k]
    return unit_rms(out[:n])


def bass_line(rng: Rng, n: int, bpm: float, root_midi: int | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """2-bar minor-pentatonic bass riff (low-passed saw or sine), RMS 1."""
    step = 60.0 / bpm / 4 * sr
    root = midi_hz(root_midi if root_midi is not None else int(rng.integers(28, 41)))
    saw = bool(rng.random() < 0.5)
    notes, s = [], 0
    while s < PATTERN_STEPS:
        if s == 0 or rng.random() < 0.5:
            length = min(int(rng.choice([2, 3, 4, 6, 8])), PATTERN_STEPS - s)
            notes.append((s, length, 0 if s == 0 else int(rng.choice([0, 3, 5, 7, 10, 12]))))
            s += length
        else:
            s += int(rng.choice([1, 2]))
    out = np.zeros(n + int(PATTERN_STEPS * step) + sr)
    for b in range(int(n / (PATTERN_STEPS * step)) + 1):
        for s0, length, semi in notes:
            pos, m = int(round((b * PATTERN_STEPS + s0) * step)), int(length * step)
            t, f = np.arange(m) / sr, root * 2 ** (semi / 12)
            w = 2 * ((f * t) % 1.0) - 1 if saw else np.sin(TWO_PI * f * t)
            out[pos : pos + m] += w * np.clip(np.minimum(t / 0.005, (m / sr - t) / 0.03), 0, 1)
    out = out[:n]
    if saw:
        out = _filt(out, "lowpass", rng.uniform(250, 900), 2, sr)
    return unit_rms(out)


# ---------------------------------------------------------------- patches
@dataclass(frozen=True)
class Patch:
    """An instrument: additive partials or 2-operator FM, with an ADSR-like envelope.

    Attributes:
        partials: relative amplitudes of harmonics 1..K (additive mode; ignored when ``fm_index`` > 0).
        fm_ratio: modulator/carrier frequency ratio (FM mode).
        fm_index: modulation index; 0 selects additive synthesis.
        attack_s: attack time.
        decay_s: exponential decay time constant after the attack.
        sustain: level the decay settles to (0..1).
        vibrato_hz: vibrato rate (0 = none).
        vibrato_cents: vibrato depth.
        brightness: per-harmonic extra decay speed (higher partials die faster: plucked/struck sounds).
    """

    partials: tuple[float, ...] = (1.0,)
    fm_ratio: float = 1.0
    fm_index: float = 0.0
    attack_s: float = 0.01
    decay_s: float = 0.3
    sustain: float = 0.5
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    brightness: float = 0.0


def random_patch(rng: Rng, sustained: bool) -> Patch:
    """A random patch; ``sustained`` favours pads (slow attack, high sustain) over plucks/keys."""
    k = int(rng.integers(3, 9))
    shape = rng.choice(["saw", "square", "random"])
    h = np.arange(1, k + 1)
    amps = {"saw": 1.0 / h, "square": np.where(h % 2 == 1, 1.0 / h, 0.05)}.get(str(shape), rng.uniform(0, 1, k))
    use_fm = bool(rng.random() < 0.4)
    return Patch(
        partials=tuple(float(a) for a in amps),
        fm_ratio=float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 3.5])),
        fm_index=float(rng.uniform(0.5, 4.0)) if use_fm else 0.0,
        attack_s=float(rng.uniform(0.05, 0.3) if sustained else rng.uniform(0.002, 0.02)),
        decay_s=float(rng.uniform(0.3, 1.5) if sustained else rng.uniform(0.08, 0.5)),
        sustain=float(rng.uniform(0.5, 0.9) if sustained else rng.uniform(0.0, 0.4)),
        vibrato_hz=float(rng.uniform(3, 7)) if rng.random() < 0.4 else 0.0,
        vibrato_cents=float(rng.uniform(5, 25)),
        brightness=float(rng.uniform(0.0, 3.0)),
    )


def render_note(patch: Patch, freq: float, dur_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One note of ``dur_s`` seconds (plus a short release), peak around 1."""
    release = 0.05
    t = np.arange(int((dur_s + release) * sr)) / sr  # [n]
    vib = 1.0 + (2 ** (patch.vibrato_cents / 1200) - 1) * np.sin(TWO_PI * patch.vibrato_hz * t)
    phase = TWO_PI * freq * np.cumsum(vib) / sr  # [n]
    env = np.minimum(t / patch.attack_s, 1.0) * (
        patch.sustain + (1 - patch.sustain) * np.exp(-np.maximum(t - patch.attack_s, 0) / patch.decay_s))
    env *= np.clip((dur_s + release - t) / release, 0.0, 1.0)
    if patch.fm_index > 0:
        mod_env = patch.fm_index * np.exp(-t / (patch.decay_s * 2))
        return env * np.sin(phase + mod_env * np.sin(patch.fm_ratio * phase))
    out = np.zeros_like(t)
    nyquist = sr / 2 * 0.95
    for k, amp in enumerate(patch.partials, start=1):
        if amp == 0 or k * freq >= nyquist:
            continue
        out += amp * np.sin(k * phase) * np.exp(-t * patch.brightness * (k - 1))
    return env * out / max(1e-9, sum(patch.partials))


# ---------------------------------------------------------------- clips
def _chords(rng: Rng, n: int, beat: int, root: int, sr: int) -> np.ndarray:
    """One minor-key triad per bar on a random sustained patch, RMS 1."""
    pad = random_patch(rng, sustained=True)
    out = np.zeros(n)  # [n]
    for start in range(0, n, 4 * beat):
        chord = root + 12 + MINOR_SCALE[(int(rng.integers(0, 7)) + np.array([0, 2, 4])) % 7]  # [3] MIDI notes
        length = min(4 * beat, n - start)
        for note in chord:
            wave = render_note(pad, midi_hz(float(note)), length / sr, sr)[:length]  # [<= length]
            out[start : start + len(wave)] += wave
    return unit_rms(out)


def music_clip(n: int, rng: Rng, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A clip of ``n`` samples: chords, a bass line and boom-bap drums at a random tempo and key.

    Returns:
        float32 ``[n]`` with peak :data:`CLIP_PEAK`.
    """
    bpm = float(rng.uniform(*CLIP_BPM))
    beat = int(sr * 60.0 / bpm)
    root = int(rng.integers(*CLIP_ROOT_MIDI))
    mix = _chords(rng, n, beat, root, sr)  # [n]
    mix = mix + 10 ** (rng.uniform(*CLIP_DRUMS_DB) / 20) * drum_loop(rng, n, bpm, float(rng.uniform(0.0, 0.3)), sr)
    mix = mix + 10 ** (rng.uniform(*CLIP_BASS_DB) / 20) * bass_line(rng, n, bpm, root - 12, sr)
    return (CLIP_PEAK * mix / (np.abs(mix).max() + 1e-9)).astype(np.float32)
