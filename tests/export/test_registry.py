"""The format registry drives the CLI and verify: a toy format registered here gets ``ast-export npz`` and
``ast-export verify``; precision options are validated from the records; only typed errors are one line."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ast_export import commands, onnx_export, registry
from ast_export.artifact import ArtifactFormat
from ast_export.cli import main
from ast_export.errors import ArtifactError
from ast_export.options import ExportOptions
from tests.export import toy_format


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def toy() -> Iterator[ArtifactFormat]:
    registry.register(toy_format.FORMAT)  # the one registry line (a shipped format: FORMAT_MODULES)
    try:
        yield toy_format.FORMAT
    finally:
        registry.FORMATS.pop(toy_format.FORMAT.name)


def test_toy_format_exports_and_verifies_through_the_registry(toy: ArtifactFormat, weights: Path,
                                                              tmp_path: Path) -> None:
    assert "npz" in _invoke("--help").stdout
    out = tmp_path / "m.npz"
    result = _invoke("npz", "--weights", str(weights), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    report = json.loads((tmp_path / "m.npz.verify.json").read_text())
    assert report["passed"] and report["format"] == "npz" and report["precision"] == "fp32"
    assert {c["runtime"] for c in report["checks"]} == {"metadata", "npz"}
    # no audio here (hermetic cwd): the fallback is one plain WARNING line, and the report says so
    assert result.stderr.count("WARNING: no real audio") == 1
    assert report["audio_source"].startswith("test signals")
    assert registry.read_metadata(out)["format"] == "npz"
    assert registry.artifact_format(out) == "npz"
    result = _invoke("verify", str(out), "--weights", str(weights), "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.stderr
    assert "parity OK" in result.stdout


def test_toy_format_declares_its_precisions(toy: ArtifactFormat, weights: Path) -> None:
    for extra in (["--precision", "int8"], ["--optimize"], ["--fp16"]):
        result = _invoke("npz", "--weights", str(weights), *extra)
        assert result.exit_code == 2, (extra, result.stderr)
    assert "npz exports fp32 only" in _invoke("npz", "--weights", str(weights), "--precision", "fp16").stderr
    with pytest.raises(ArtifactError, match="no tolerance declared for npz int8"):
        toy.tolerance("int8")


def test_register_refuses_a_clash(toy: ArtifactFormat) -> None:
    with pytest.raises(ValueError, match="clashes"):
        registry.register(toy)


def test_precision_usage_errors(weights: Path) -> None:
    assert _invoke("onnx", "--weights", str(weights), "--precision", "int8", "--optimize").exit_code == 2
    assert _invoke("onnx", "--weights", str(weights), "--precision", "bf16").exit_code == 2  # not in the spec
    assert _invoke("onnx", "--weights", str(weights), "--precision", "fp16", "--int8").exit_code == 2
    result = _invoke("torchscript", "--weights", str(weights), "--precision", "fp16")
    assert result.exit_code == 2 and "torchscript exports fp32 only" in result.stderr
    result = _invoke("pt2", "--weights", str(weights), "--optimize")
    assert result.exit_code == 2 and "no optimised form" in result.stderr


def test_deprecated_flag_is_an_alias_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    kwargs = {"precision": None, "optimize": False, "fp16": False, "int8": True, "opset": 18}
    with caplog.at_level(logging.WARNING, logger="ast_export"):
        options = commands.take_export_options(registry.get_format("onnx"), kwargs)
    assert options == ExportOptions("int8", False, {"opset": 18})
    assert [r.getMessage() for r in caplog.records] == ["--int8 is deprecated; use --precision int8"]
    assert not kwargs  # every option was taken


def test_unexpected_error_keeps_its_traceback(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (a bare RuntimeError inside the export) is not turned into the one-line path."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(onnx_export, "export_fp32_model", broken)
    result = _invoke("onnx", "--weights", str(weights), "--no-verify")
    assert result.exit_code != 0
    assert isinstance(result.exception, RuntimeError)
    assert "error:" not in result.stderr
    assert "injected bug" in "".join(traceback.format_exception(*result.exc_info))


def test_unwritable_out_and_report_are_one_line(toy: ArtifactFormat, weights: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _invoke("npz", "--weights", str(weights), "--out", str(blocker / "m.npz"), "--no-verify")
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {blocker / 'm.npz'}: cannot write the artifact") and "--out" in lines[-1]
    out = tmp_path / "m.npz"
    assert _invoke("npz", "--weights", str(weights), "--out", str(out), "--no-verify").exit_code == 0
    result = _invoke("verify", str(out), "--weights", str(weights), "--report", str(blocker / "r.json"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {blocker / 'r.json'}: cannot write")
