"""bench.accuracy.filler: whole tracks or pieces, written as FLAC and listed in filler.csv."""

from __future__ import annotations

import csv

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from bench.accuracy.filler import SAMPLE_RATE, cut, main


def test_cut_keeps_whole_files_short_tracks_and_drops_a_short_later_piece() -> None:
    wave = np.zeros(10 * SAMPLE_RATE, dtype=np.float32)
    assert [len(p) for p in cut(wave, 0, 6)] == [len(wave)]
    assert [len(p) for p in cut(wave[:9 * SAMPLE_RATE], 4 * SAMPLE_RATE, 6)] == [4 * SAMPLE_RATE] * 2  # 1 s dropped
    assert len(cut(wave, 3 * SAMPLE_RATE, 2)) == 2
    assert [len(p) for p in cut(wave, 30 * SAMPLE_RATE, 1)] == [len(wave)]  # shorter than a piece: kept whole


def test_the_command_writes_whole_tracks_and_skips_a_bad_file(tmp_path) -> None:
    good = tmp_path / "good.wav"
    sf.write(str(good), 0.1 * np.sin(np.arange(5 * 44100) / 20.0), 44100)
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"not audio")
    sources = tmp_path / "files.txt"
    sources.write_text(f"{good}\n{bad}\n")
    result = CliRunner().invoke(main, ["--sources", str(sources), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "out" / "filler.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["sample"] for r in rows] == ["filler000_0"]
    info = sf.info(rows[0]["record_path"])
    assert (info.samplerate, info.frames) == (SAMPLE_RATE, 5 * SAMPLE_RATE)


def test_a_copy_of_a_benchmark_source_is_not_filler(tmp_path) -> None:
    """Debian packages share files (supertuxkart ships supertux's music): a copy would be the sampled record
    itself, indexed twice."""
    bench_sources = tmp_path / "src" / "supertux-data"
    bench_sources.mkdir(parents=True)
    wave = 0.1 * np.sin(np.arange(3 * 44100) / 20.0)
    sf.write(str(bench_sources / "theme.wav"), wave, 44100)
    copy, other = tmp_path / "kart_theme.wav", tmp_path / "other.wav"
    copy.write_bytes((bench_sources / "theme.wav").read_bytes())
    sf.write(str(other), 0.1 * np.sin(np.arange(3 * 44100) / 30.0), 44100)
    sources = tmp_path / "files.txt"
    sources.write_text(f"{copy}\n{other}\n")
    result = CliRunner().invoke(main, ["--sources", str(sources), "--out", str(tmp_path / "out"),
                                       "--exclude-copies-of", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "out" / "filler.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["sample"] for r in rows] == ["filler001_0"]  # the copy (line 0) is skipped, numbering kept
