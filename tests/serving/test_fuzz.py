"""Hypothesis fuzzing of decoding + windowing: random rates, lengths, channels, dtypes, NaN/Inf values.

Property: every generated file yields finite windows in [-1, 1] that follow the placement rule, or a clean
one-line :class:`AudioError`; nothing else ever escapes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serving.audio import AudioError
from serving.contract import window_starts
from serving.windows import iter_batches

FUZZ_EXAMPLES = 300
WINDOW, HOP, BATCH = 4000, 1500, 3
SUBTYPES = {  # (container, subtype, is_float)
    "wav-u8": ("WAV", "PCM_U8", False), "wav-16": ("WAV", "PCM_16", False), "wav-24": ("WAV", "PCM_24", False),
    "wav-32": ("WAV", "PCM_32", False), "wav-float": ("WAV", "FLOAT", True), "wav-double": ("WAV", "DOUBLE", True),
    "flac-16": ("FLAC", "PCM_16", False), "flac-24": ("FLAC", "PCM_24", False), "ogg": ("OGG", "VORBIS", False),
}
SPECIALS = [np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 1e30, -1e30]


@st.composite
def audio_files(draw: st.DrawFn) -> tuple[np.ndarray, int, str]:
    kind = draw(st.sampled_from(sorted(SUBTYPES)))
    rate = draw(st.sampled_from([1000, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000])
                if kind == "ogg" else st.integers(min_value=200, max_value=200_000))
    frames = draw(st.integers(min_value=0, max_value=30_000))
    channels = draw(st.integers(min_value=1, max_value=8))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal((frames, channels)) * draw(st.floats(0.0, 4.0))).astype(np.float64)
    if SUBTYPES[kind][2] and frames and draw(st.booleans()):
        spots = rng.integers(0, data.size, size=draw(st.integers(1, 20)))
        data.flat[spots] = rng.choice(SPECIALS, size=spots.size)
    return data, rate, kind


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audio_files())
def test_decode_and_window_never_crash(case: tuple[np.ndarray, int, str]) -> None:
    data, rate, kind = case
    container, subtype, is_float = SUBTYPES[kind]
    if not is_float:
        data = np.clip(np.nan_to_num(data), -1.0, 1.0)  # integer files cannot hold NaN / out-of-range
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz.{container.lower()}"
        try:
            sf.write(path, data, rate, format=container, subtype=subtype)
        except (sf.LibsndfileError, ValueError, RuntimeError):
            event("writer refused the combination")
            return  # the writer refused the combination (e.g. Vorbis at odd rates): nothing to decode
        batches = list(iter_batches([str(path)], WINDOW, HOP, BATCH, 16000))
    done = [d for b in batches for d in b.done]
    assert len(done) == 1
    if done[0].error is not None:
        assert "\n" not in done[0].error and done[0].error
        event(f"clean error: {done[0].error}")
        return
    event("decoded")
    waves = np.concatenate([b.waves for b in batches])
    starts = np.concatenate([b.starts for b in batches])
    assert waves.dtype == np.float32 and np.isfinite(waves).all() and np.abs(waves).max(initial=0) <= 1.0
    np.testing.assert_array_equal(starts, window_starts(done[0].samples, WINDOW, HOP))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=900), max_size=30), st.integers(1, 500), st.integers(1, 700))
def test_windowing_any_chunking(sizes: list[int], hop: int, window: int) -> None:
    chunks = [np.full(n, float(i), np.float32) for i, n in enumerate(sizes)]
    total = sum(sizes)
    try:
        batches = list(iter_batches(["x"], window, hop, 4, 16000, source=lambda p, s: chunks))
    except AudioError:  # pragma: no cover - errors are reported on FileDone, never raised
        raise
    (done,) = [d for b in batches for d in b.done]
    if total == 0:
        assert done.error == "contains no audio samples"
        return
    starts = np.concatenate([b.starts for b in batches])
    np.testing.assert_array_equal(starts, window_starts(total, window, hop))
    signal = np.concatenate(chunks + [np.zeros(window, np.float32)])
    waves = np.concatenate([b.waves for b in batches])
    for s, w in zip(starts, waves, strict=True):
        np.testing.assert_array_equal(w, signal[s: s + window])
