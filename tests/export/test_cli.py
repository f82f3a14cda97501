"""``ast-export`` CLI: export+verify exit codes, a perturbed weight inside the artifact fails verify, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import numpy_helper

from ast_export.cli import main
from ast_export.commands import default_out

PERTURBATION = 0.05


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_default_out_paths(weights: Path) -> None:
    assert default_out(weights, "onnx") == weights.with_name("modelo_audio.onnx")
    assert default_out(weights, "onnx", "int8").name == "modelo_audio.int8.onnx"
    assert default_out(weights, "onnx", "fp16").name == "modelo_audio.fp16.onnx"
    assert default_out(weights, "onnx", "fp32-optimized").name == "modelo_audio.opt.onnx"
    assert default_out(weights, "torchscript").name == "modelo_audio.ts"
    assert default_out(weights, "pt2").name == "modelo_audio.pt2"


def test_verify_ok_writes_report(onnx_path: Path, weights: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, out, err = _run("verify", str(onnx_path), "--weights", str(weights), "--report", str(report))
    assert code == 0, err
    assert "parity OK" in out and "\u2713" in err
    data = json.loads(report.read_text())
    assert data["passed"] and data["format"] == "onnx"
    assert {"probs_max_abs", "embedding_max_abs", "top1_agreement"} <= set(data["checks"][-1])


def test_perturbed_weight_in_artifact_fails_verify(onnx_path: Path, weights: Path, tmp_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    floats = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    target = max(floats, key=lambda i: int(np.prod(i.dims)))  # the biggest weight matrix
    array = numpy_helper.to_array(target).copy()
    array.flat[: array.size // 4] += PERTURBATION
    target.CopyFrom(numpy_helper.from_array(array.astype(np.float32), target.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    code, _, err = _run("verify", str(broken), "--weights", str(weights))
    assert code == 1, err
    assert "parity FAILED" in err and "\u2717" in err
    assert "Traceback" not in err
    assert not json.loads((tmp_path / "broken.onnx.verify.json").read_text())["passed"]


def test_cli_export_onnx(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    code, stdout, err = _run("onnx", "--weights", str(weights), "--out", str(out))
    assert code == 0, err
    assert stdout.strip() == str(out) and out.exists()
    assert (tmp_path / "m.onnx.verify.json").exists()
    assert "MB" in err and " s," in err  # wall time and size are logged


def test_usage_errors(weights: Path, tmp_path: Path) -> None:
    assert _run("onnx", "--weights", str(weights), "--fp16", "--int8")[0] == 2
    assert _run("onnx", "--weights", str(tmp_path / "missing.pth"))[0] == 2
    assert _run("onnx", "--weights", str(weights), "--opset", "13")[0] == 2
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a weights file")
    code, _, err = _run("onnx", "--weights", str(bad))
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = _run("verify", str(bad), "--weights", str(weights))
    assert code == 1 and "error:" in err
