"""Where verification's windows come from: real audio, the manifest's labelled test split (read by the
contract's rules), or deterministic test signals with a WARNING; and the unchecked accuracy bar is said."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ast_export.errors import VerifyInputError
from ast_export.options import VerifyOptions
from ast_export.signals import EDGE_KINDS, edge_windows, signal_song
from ast_export.verify_inputs import SIGNAL_KIND, Geometry, build_inputs, calibration_windows

RATE = 16000
GEO = Geometry(RATE, window=RATE, hop=RATE // 2)  # 1 s windows keep these tests cheap
LABELS = ["rec_a", "rec_b"]
SONG_S = 2.5


def _song(path: Path, seed: int) -> Path:
    wave = signal_song(seed, RATE, seconds=SONG_S)
    sf.write(path, np.stack([wave, wave], axis=1), RATE)  # stereo: decoding mixes it down
    return path


def _manifest(folder: Path) -> Path:
    (folder / "songs").mkdir()
    _song(folder / "songs" / "a.wav", 0)
    _song(folder / "songs" / "b.wav", 1)
    manifest = folder / "manifest.csv"
    manifest.write_text("song,sample,split\nsongs/a.wav,rec_a,Test\nsongs/b.wav,rec_b, test\n"
                        "songs/a.wav,rec_a,train\nsongs/b.wav,unknown,test\n", encoding="utf-8")
    return manifest


def test_edge_signals_are_deterministic_and_in_range() -> None:
    first, kinds = edge_windows(GEO.window, RATE)
    again, _ = edge_windows(GEO.window, RATE)
    assert kinds == list(EDGE_KINDS) == ["noise", "silence", "clipping", "chirp"]
    assert first.shape == (4, GEO.window) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert np.abs(first).max() <= 1.0 and not first[1].any()
    assert np.isclose(np.abs(first[2]).max(), 1.0)  # driven into clipping


def test_no_real_audio_warns_and_leaves_the_accuracy_bar_unchecked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        inputs = build_inputs(GEO, LABELS, VerifyOptions(max_windows=4), want_heldout=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("no real audio") and "accuracy bar was NOT checked" in warnings[1]
    assert inputs.kinds == [SIGNAL_KIND] * 4 + list(EDGE_KINDS)
    assert inputs.windows.shape == (8, GEO.window)
    assert inputs.heldout and all(song.label is None for song in inputs.heldout)
    assert "accuracy bar not checked" in inputs.heldout_source


def test_labelled_test_split_from_the_manifest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = _manifest(tmp_path)
    with caplog.at_level(logging.WARNING):
        inputs = build_inputs(GEO, LABELS, VerifyOptions(manifest=manifest), want_heldout=True)
    assert [(Path(s.name).name, s.label) for s in inputs.heldout] == [("a.wav", 0), ("b.wav", 1)]
    assert inputs.heldout[0].windows.shape == (4, GEO.window)  # 2.5 s: 0, 0.5, 1.0 and the end-aligned 1.5
    assert inputs.audio_source.endswith("(test split)") and "audio" in inputs.kinds
    assert [r.getMessage() for r in caplog.records] == ["1 test songs have samples unknown to the model; skipped"]


def test_audio_files_that_do_not_decode(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(VerifyInputError, match="none of the --audio files"):
        build_inputs(GEO, LABELS, VerifyOptions(audio=(bad,)))
    good = _song(tmp_path / "good.flac", 3)
    inputs = build_inputs(GEO, LABELS, VerifyOptions(audio=(bad, good), max_windows=2))
    assert inputs.audio_source == "audio files" and inputs.kinds[:2] == ["audio", "audio"]


def test_unreadable_manifest_is_a_typed_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nx.wav,a\n", encoding="utf-8")
    with pytest.raises(VerifyInputError, match="no song, sample column"):
        build_inputs(GEO, LABELS, VerifyOptions(manifest=manifest))


def test_decoding_is_the_contracts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """NaN/Inf become 0 with one warning per file, loud samples are clipped: the same rule as ast-serve."""
    wave = signal_song(0, RATE, seconds=SONG_S) * 2.0  # peaks at 1.6: clipped on decode
    wave[:3] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "repaired.wav"
    sf.write(path, wave, RATE, subtype="FLOAT")
    with caplog.at_level(logging.WARNING):
        inputs = build_inputs(GEO, LABELS, VerifyOptions(audio=(path,), max_windows=1))
    assert [r.getMessage() for r in caplog.records] == [f"{path}: replaced 3 non-finite samples (NaN/Inf) with 0"]
    window = inputs.windows[0]
    assert np.isfinite(window).all() and not window[:3].any() and np.abs(window).max() == 1.0


def test_calibration_windows_prefer_audio_then_train_split(tmp_path: Path) -> None:
    """int8 calibration reads the user's audio the way the parity pool does, but a manifest's train split."""
    manifest = _manifest(tmp_path)
    windows, source, kind = calibration_windows(GEO, LABELS, (), manifest, max_windows=3)
    assert windows.shape == (3, GEO.window) and source.endswith("(train split)") and kind == "audio"
    song = _song(tmp_path / "c.wav", 2)
    _, source, _ = calibration_windows(GEO, LABELS, (song,), manifest, max_windows=3)
    assert source == "audio files"
    windows, source, kind = calibration_windows(GEO, LABELS, (), None, max_windows=5)
    assert kind == SIGNAL_KIND and len(windows) == 5
