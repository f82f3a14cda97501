"""ast-serve CLI: formats, exit codes, every bad input kind of issue 6, info and bench."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from serving.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, MODEL_ENV, main
from tests.serving.conftest import write_tone
from tests.serving.fake_model import LABELS

TRACEBACK = "Traceback (most recent call last)"


def _run(args: list[str], env: dict | None = None):
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert TRACEBACK not in result.output
    return result


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def songs(tmp_path: Path) -> list[Path]:
    return [write_tone(tmp_path / "a.flac", 3.2), write_tone(tmp_path / "b.wav", 1.7, rate=44100, channels=2)]


def test_jsonl_is_default_off_tty_and_has_design_fields(fake_model: Path, songs: list[Path]) -> None:
    res = _run(["identify", "--model", str(fake_model), "--top-k", "2", *map(str, songs)])
    assert res.exit_code == EXIT_OK
    rows = _jsonl(res.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in songs]
    for row in rows:
        assert set(row) == {"path", "duration_s", "matches", "error"} and row["error"] is None
        assert len(row["matches"]) == 2 and row["matches"][0]["score"] >= row["matches"][1]["score"]
        assert set(row["matches"][0]) == {"sample", "score", "start_s", "end_s", "spans"}
        assert row["matches"][0]["sample"] in LABELS
        assert 0 <= row["matches"][0]["start_s"] < row["matches"][0]["end_s"] <= row["duration_s"]
    assert rows[0]["duration_s"] == pytest.approx(3.2, abs=1e-3)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_every_format_parses(fake_model: Path, songs: list[Path], tmp_path: Path, fmt: str) -> None:
    missing = str(tmp_path / "missing.flac")
    res = _run(["identify", "--model", str(fake_model), "--format", fmt, *map(str, songs), missing])
    assert res.exit_code == EXIT_SOME_FAILED
    if fmt == "json":
        rows = json.loads(res.stdout)
        assert len(rows) == 3 and rows[2]["error"] == "no such file"
    elif fmt == "jsonl":
        assert len(_jsonl(res.stdout)) == 3
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        assert [r["path"] for r in rows] == [*map(str, songs), missing]
        assert rows[2]["error"] == "no such file" and rows[0]["sample"] in LABELS
    else:
        lines = res.stdout.splitlines()
        assert lines[0].split() == ["path", "sample", "score", "start", "end"]
        assert any("ERROR: no such file" in line for line in lines)


def test_timeline_threshold_and_plot(fake_model: Path, songs: list[Path], tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    res = _run(["identify", "--model", str(fake_model), "--format", "json", "--timeline", "--top-k", "3",
                "--plot", str(plots), "--hop", "0.25", str(songs[0])])
    row = json.loads(res.stdout)[0]
    assert len(row["timeline"]["samples"]) == 3 and len(row["timeline"]["start_s"]) == 10  # 3.2 s at 0.25 s hop
    assert len(list(plots.glob("*.png"))) == 1
    res = _run(["identify", "--model", str(fake_model), "--threshold", "1.0", str(songs[0])])
    assert _jsonl(res.stdout)[0]["matches"] == [] and res.exit_code == EXIT_OK
    res = _run(["identify", "--model", str(fake_model), "--threshold", "1.0", "--format", "table", str(songs[0])])
    assert "no known sample" in res.stdout


def _bad_inputs(d: Path) -> dict[str, str | None]:
    """Every bad-input kind of issue 6 that fits a fast test -> expected error substring (None = scored)."""
    full = write_tone(d / "full.flac", 4.0)
    (d / "truncated.flac").write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    (d / "empty.flac").write_bytes(b"")
    (d / "random.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    (d / "notes.txt").write_text("just text\n")
    (d / "folder").mkdir()
    write_tone(d / "short.wav", 0.05)
    sf.write(d / "silence.wav", np.zeros(20000, np.int16), 16000)
    sf.write(d / "clipping.wav", np.tile(np.array([32767, -32768], np.int16), 20000), 16000)
    nan = np.full(20000, 0.1, np.float32)
    nan[::7], nan[::11] = np.nan, np.inf
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    write_tone(d / "u8.wav", 1.2, subtype="PCM_U8")
    write_tone(d / "s24.flac", 1.2, subtype="PCM_24")
    write_tone(d / "f32.wav", 1.2, subtype="FLOAT")
    write_tone(d / "r8k.wav", 1.2, rate=8000)
    write_tone(d / "r96k.wav", 1.2, rate=96000)
    write_tone(d / "six.wav", 1.2, rate=48000, channels=6)
    write_tone(d / "with spaces in name.ogg", 1.2, fmt="OGG", subtype="VORBIS")
    latin1 = os.path.join(os.fsencode(d), "caf\xe9.flac".encode("latin-1"))  # not valid UTF-8
    write_tone(latin1, 1.2)
    return {
        "full.flac": None, "truncated.flac": "?", "empty.flac": "empty file",
        "random.flac": "not a readable audio file", "notes.txt": "not a readable audio file",
        "folder": "is a directory", "missing.flac": "no such file", "*.nomatch": "no such file",
        "short.wav": None, "silence.wav": None, "clipping.wav": None, "nan.wav": None, "u8.wav": None,
        "s24.flac": None, "f32.wav": None, "r8k.wav": None, "r96k.wav": None, "six.wav": None,
        "with spaces in name.ogg": None, os.fsdecode(latin1): None, "full.flac#again": None,
    }


def test_bad_inputs_each_get_result_or_one_line_error(fake_model: Path, tmp_path: Path) -> None:
    expected = _bad_inputs(tmp_path)
    args = [name if os.path.isabs(name) else str(tmp_path / name.split("#")[0]) for name in expected]
    res = _run(["identify", "--model", str(fake_model), "--format", "jsonl", *args])
    assert res.exit_code == EXIT_SOME_FAILED
    rows = _jsonl(res.stdout)
    assert len(rows) == len(expected)  # the same path twice is scored twice
    for (name, want), row in zip(expected.items(), rows, strict=True):
        if want is None:
            assert row["error"] is None and row["matches"], (name, row)
            assert all(np.isfinite(m["score"]) for m in row["matches"])
        elif want == "?":  # truncated FLAC: scored from what decodes, or a clean error
            assert row["error"] is None or "\n" not in row["error"]
        else:
            assert want in row["error"] and "\n" not in row["error"], (name, row)
            assert f"{row['path']}: {row['error']}" in res.stderr
    assert "\\xe9" in rows[-2]["path"]  # undecodable byte shown escaped, output stays valid UTF-8
    assert rows[0]["matches"] == rows[-1]["matches"]
    assert rows[1]["duration_s"] is None or rows[1]["duration_s"] < 4.0
    assert "replaced" in res.stderr and "non-finite" in res.stderr  # NaN/Inf repaired with a warning
    assert rows[expected_index(expected, "short.wav")]["duration_s"] == pytest.approx(0.05, abs=1e-3)


def expected_index(expected: dict, name: str) -> int:
    return list(expected).index(name)


def test_all_good_exit_zero_and_usage_errors(fake_model: Path, songs: list[Path], tmp_path: Path) -> None:
    assert _run(["identify", "--model", str(fake_model), str(songs[0])]).exit_code == EXIT_OK
    assert _run(["identify", "--model", str(fake_model)]).exit_code == EXIT_USAGE  # no paths
    assert _run(["identify", "--model", str(fake_model), "--top-k", "0", "x"]).exit_code == EXIT_USAGE
    assert _run(["identify", "--model", str(fake_model), "--format", "xml", "x"]).exit_code == EXIT_USAGE
    bad = _run(["identify", "--model", str(tmp_path / "nope.onnx"), str(songs[0])])
    assert bad.exit_code == EXIT_USAGE and bad.stderr.count("\n") == 1 and "model file not found" in bad.stderr


def test_default_model_from_env_then_demo_path(fake_model: Path, songs: list[Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    res = _run(["identify", str(songs[0])], env={MODEL_ENV: str(fake_model)})
    assert res.exit_code == EXIT_OK
    monkeypatch.chdir(tmp_path)
    res = _run(["identify", str(songs[0])], env={MODEL_ENV: ""})
    assert res.exit_code == EXIT_USAGE and "runs/demo/modelo_audio.onnx" in res.stderr
    demo = tmp_path / "runs" / "demo"
    demo.mkdir(parents=True)
    (demo / "modelo_audio.onnx").write_bytes(fake_model.read_bytes())
    assert _run(["identify", str(songs[0])], env={MODEL_ENV: ""}).exit_code == EXIT_OK


def test_help_documents_default_model() -> None:
    text = _run(["identify", "--help"]).stdout
    assert MODEL_ENV in text and "modelo_audio.onnx" in text


def test_info_shows_hash_and_bench_reports(fake_model: Path, songs: list[Path]) -> None:
    info = _run(["info", "--model", str(fake_model)])
    assert info.exit_code == EXIT_OK and "weights_sha256" in info.stdout and "0" * 64 in info.stdout
    raw = json.loads(_run(["info", "--model", str(fake_model), "--json"]).stdout)
    assert raw["format_version"] == 1
    bench = _run(["bench", "--model", str(fake_model), "--seconds", "0.2", "--batch-size", "4"])
    for key in ("provider", "clips/s", "real-time factor", "latency p50", "latency p95"):
        assert key in bench.stdout
    files = _run(["bench", "--model", str(fake_model), "--files", str(songs[0]), "--files", str(songs[1])])
    assert "decoding included" in files.stdout
    assert "CPUExecutionProvider" in files.stdout or "OpenVINO CPU" in files.stdout  # --backend auto


def test_device_cuda_fails_clearly_without_gpu(fake_model: Path, songs: list[Path]) -> None:
    res = _run(["identify", "--model", str(fake_model), "--device", "cuda", str(songs[0])])
    if res.exit_code == EXIT_USAGE:  # no usable GPU here
        assert res.stderr.startswith("error: --device cuda:") and res.stderr.count("\n") == 1
    else:  # pragma: no cover - a GPU machine
        assert res.exit_code == EXIT_OK and "CUDAExecutionProvider" in res.stderr


def test_auto_logs_provider_once(fake_model: Path, songs: list[Path]) -> None:
    res = _run(["identify", "--model", str(fake_model), str(songs[0])])
    assert [line for line in res.stderr.splitlines() if line.startswith("using ")] == [res.stderr.strip()]
