"""ast-serve --backend/--precision on every model command, and bench --format json / --files a b (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serving import cli as cli_mod
from serving import session as session_mod
from serving.cli import EXIT_OK, EXIT_USAGE, main
from serving.contract import ModelError
from serving.session import SessionOptions
from tests.serving.conftest import write_tone

BENCH_KEYS = {"clips_per_s", "rtf", "p50_ms", "p95_ms", "backend", "precision", "provider"}


def _run(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert "Traceback (most recent call last)" not in result.output
    return result


def _bench_json(model: Path, *extra: str) -> dict:
    res = _run(["bench", "--model", str(model), "--seconds", "0.1", "--batch-size", "2", "--format", "json",
                *extra])
    assert res.exit_code == EXIT_OK, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("command", [["identify"], ["bench"], ["info"], ["http"], ["index", "build"]])
def test_every_model_command_takes_backend_and_precision(command: list[str]) -> None:
    res = _run([*command, "--help"])
    assert res.exit_code == EXIT_OK
    for flag in ("--backend", "--precision", "auto|ort|openvino", "auto|fp32|bf16|fp16|int8"):
        assert flag in res.stdout.replace("[", "").replace("]", ""), flag


def test_bench_json_has_the_design_fields_and_applies_the_options(fake_model: Path) -> None:
    report = _bench_json(fake_model, "--backend", "ort", "--precision", "fp32")
    assert BENCH_KEYS <= set(report)
    assert (report["backend"], report["precision"], report["provider"]) == ("ort", "fp32", "CPUExecutionProvider")
    assert report["clips_per_s"] > 0 and report["rtf"] > 0 and report["p95_ms"] >= report["p50_ms"] > 0


def test_bench_json_on_openvino(fake_model: Path) -> None:
    pytest.importorskip("openvino")
    report = _bench_json(fake_model, "--backend", "openvino", "--precision", "fp32")
    assert (report["backend"], report["precision"], report["provider"]) == ("openvino", "fp32", "OpenVINO CPU")


def test_auto_logs_one_line_naming_the_choice(fake_model: Path) -> None:
    res = _run(["bench", "--model", str(fake_model), "--seconds", "0.1", "--format", "json"])
    report = json.loads(res.stdout)
    lines = [line for line in res.stderr.splitlines() if line.startswith("using ")]
    assert len(lines) == 1 and report["provider"] in lines[0] and report["precision"] in lines[0]


def test_impossible_precision_exits_2_in_one_line(fake_model: Path) -> None:
    res = _run(["bench", "--model", str(fake_model), "--backend", "ort", "--precision", "bf16"])
    assert res.exit_code == EXIT_USAGE
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bf16" in errors[0] and not res.stdout


def test_identify_applies_backend(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "a.flac", 2.5)
    res = _run(["identify", "--model", str(fake_model), "--backend", "ort", "--precision", "fp32",
                "--format", "json", str(song)])
    assert res.exit_code == EXIT_OK and json.loads(res.stdout)[0]["error"] is None
    assert "CPUExecutionProvider (ort, fp32)" in res.stderr


def test_bench_files_after_one_flag_and_repeated(fake_model: Path, tmp_path: Path) -> None:
    songs = [str(write_tone(tmp_path / f"{n}.flac", 1.5)) for n in "abc"]
    one_flag = _bench_json(fake_model, "--backend", "ort", "--files", *songs)
    repeated = _bench_json(fake_model, "--backend", "ort", "--files", songs[0], "--files", songs[1],
                           "--files", songs[2])
    for report in (one_flag, repeated):
        assert report["mode"].startswith("files (3") and report["audio_s"] == pytest.approx(4.5, abs=0.01)


def test_default_streams_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch work gets two OpenVINO streams where there are two cores; http and one-core machines one (NOTES #41)."""
    monkeypatch.setattr(session_mod, "usable_cores", lambda: 4)
    assert session_mod.default_streams(latency=False) == session_mod.BATCH_STREAMS == 2
    assert session_mod.default_streams(latency=True) == 1
    assert session_mod.default_streams(latency=False, threads=1) == 1
    monkeypatch.setattr(session_mod, "usable_cores", lambda: 1)
    assert session_mod.default_streams(latency=False) == 1


@pytest.mark.parametrize(("args", "streams"), [(["bench"], 2), (["bench", "--streams", "3"], 3),
                                               (["http", "--port", "0"], 1), (["http", "--streams", "2"], 2)])
def test_commands_open_their_default_streams(fake_model: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                             streams: int) -> None:
    seen: list[int] = []

    def refuse(path: str, options: SessionOptions) -> None:
        seen.append(options.streams)
        raise ModelError("recorded")  # the command then exits 2 before doing any work

    monkeypatch.setattr(session_mod, "usable_cores", lambda: 2)
    monkeypatch.setattr(cli_mod, "ModelSession", refuse)
    res = _run([*args, "--model", str(fake_model)])
    assert res.exit_code == EXIT_USAGE and seen == [streams]
