"""``ast-export`` CLI: export+verify exit codes, a perturbed weight inside the artifact fails verify, usage errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from ast_export.cli import main
from ast_export.metadata import artifact_precision
from ast_export.pipeline import default_out
from ast_export.registry import read_metadata
from models.hub import cached_path, file_sha256
from serving.contract import METADATA_KEY
from tests.loopback import folder_handler, loopback_server
from tests.tolerances import ORT_PROBS_MAX_ABS

PERTURBATION = 0.05


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_default_out_paths(weights: Path) -> None:
    assert default_out(weights, "onnx") == weights.with_name("modelo_audio.onnx")
    assert default_out(weights, "onnx", "int8").name == "modelo_audio.int8.onnx"
    assert default_out(weights, "onnx", "fp16").name == "modelo_audio.fp16.onnx"
    assert default_out(weights, "onnx", optimize=True).name == "modelo_audio.opt.onnx"
    assert default_out(weights, "torchscript").name == "modelo_audio.ts"
    assert default_out(weights, "pt2").name == "modelo_audio.pt2"
    assert default_out("https://host/v1/ast.pth?dl=1", "onnx", "int8") == Path.cwd() / "ast.int8.onnx"


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


def test_cli_export_onnx_from_url(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--weights URL``: downloaded once into the XDG cache, checked against --sha256, output in the cwd."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    sha = file_sha256(weights)
    with loopback_server(folder_handler(weights.parent)) as base:
        url = f"{base}/{weights.name}"
        code, _, err = _run("onnx", "--weights", url, "--sha256", "0" * 64, "--no-verify")
        assert code == 1 and "error: sha256 mismatch" in err and err.count("\n") == 1  # (tqdm redraws with \r)
        code, stdout, err = _run("onnx", "--weights", url, "--sha256", sha, "--no-verify")
    assert code == 0, err
    out = tmp_path / "modelo_audio.onnx"  # the cwd (see conftest), named after the URL
    assert stdout.strip() == str(out) and out.exists()
    assert read_metadata(out)["weights_sha256"] == sha
    assert [p.name for p in (tmp_path / "xdg" / "ast-sampleid").iterdir()] == [cached_path(url).name]
    code, stdout, err = _run("verify", str(out), "--weights", url)  # server gone: served from the cache
    assert code == 0, err
    assert "parity OK" in stdout


def test_usage_errors(weights: Path, tmp_path: Path) -> None:
    assert _run("onnx", "--weights", str(weights), "--fp16", "--int8")[0] == 2
    code, _, err = _run("onnx", "--weights", str(tmp_path / "missing.pth"))
    assert code == 2 and f"{tmp_path / 'missing.pth'}: no such file" in err
    assert _run("verify", str(weights), "--weights", str(tmp_path))[0] == 2  # a folder
    assert _run("onnx", "--weights", str(weights), "--opset", "13")[0] == 2
    code, _, err = _run("onnx", "--weights", str(weights), "--sha256", "abc")
    assert code == 2 and "must be 64 hex digits" in err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a weights file")
    code, _, err = _run("onnx", "--weights", str(bad))
    assert code == 1 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, _, err = _run("verify", str(bad), "--weights", str(weights))
    assert code == 1 and "error:" in err


def test_older_metadata_spelling_still_verifies(onnx_path: Path, weights: Path, tmp_path: Path) -> None:
    """Files from before --precision wrote ``"precision": "fp32-optimized"`` and ``variant``; verify reads them
    as fp32 optimised (the fp32 ORT bar)."""
    model = onnx.load(str(onnx_path))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(prop.value)
    del meta["optimized"]
    meta.update(precision="fp32-optimized", variant={"precision": "fp32-optimized", "frontend_nodes": 1})
    prop.value = json.dumps(meta)
    old = tmp_path / "old.opt.onnx"
    onnx.save(model, str(old))
    assert artifact_precision(read_metadata(old)) == ("fp32", True)
    code, out, err = _run("verify", str(old), "--weights", str(weights))
    assert code == 0, err
    report = json.loads((tmp_path / "old.opt.onnx.verify.json").read_text())
    assert report["precision"] == "fp32" and report["optimized"] is True
    assert report["tolerance"]["probs_max_abs"] == ORT_PROBS_MAX_ABS


def test_metadata_refused_by_the_contract_is_one_line(onnx_path: Path, weights: Path, tmp_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    prop.value = json.dumps({**json.loads(prop.value), "format_version": 99})
    bad = tmp_path / "future.onnx"
    onnx.save(model, str(bad))
    code, _, err = _run("verify", str(bad), "--weights", str(weights))
    assert code == 1 and err.strip().splitlines()[-1].startswith(f"error: {bad}: unknown metadata format_version")


def test_check_line_does_not_repeat_its_name(caplog: pytest.LogCaptureFixture) -> None:
    from ast_export.verify import Check, _log

    with caplog.at_level(logging.INFO, logger="ast_export"):
        _log(Check("metadata", "metadata", True, "labels, sample_rate, window_samples match"))
    assert caplog.messages == ["\u2713 metadata labels, sample_rate, window_samples match"]


def test_metadata_carries_the_calibrated_threshold(weights: Path) -> None:
    from ast_export.metadata import build_metadata
    from models import load_weights

    wf = load_weights(weights)
    assert "threshold" not in build_metadata(wf, "0" * 64, artifact_format="onnx")  # none stored: no default
    wf.train = {"threshold": 0.37, "threshold_far": 0.01}
    meta = build_metadata(wf, "0" * 64, artifact_format="onnx")
    assert (meta["threshold"], meta["threshold_far"]) == (0.37, 0.01)
    wf.train = {"threshold": 7, "threshold_far": 0.01}
    assert "threshold" not in build_metadata(wf, "0" * 64, artifact_format="onnx")
