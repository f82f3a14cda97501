"""``--precision int8``: NNCF's static QDQ graph, frontend fp32, calibration recorded in the metadata, ORT
agrees with fp32 on top-1; a missing NNCF is one line that names the fix."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from ast_export import onnx_int8, onnx_precision
from ast_export.cli import main
from ast_export.onnx_export import write_onnx
from ast_export.options import CalibrationOptions, ExportOptions
from ast_export.registry import read_metadata
from ast_export.signals import edge_windows
from ast_export.source import Source
from serving.contract import INPUT_NAME
from tests.tolerances import VARIANT_TOP1_AGREEMENT

CALIBRATION_WINDOWS = 8  # a few windows keep NNCF's statistics pass to seconds on the tiny model
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def calibration(source: Source) -> onnx_int8.Calibration:
    return onnx_int8.calibration_for(source, CalibrationOptions(max_windows=CALIBRATION_WINDOWS))


@pytest.fixture(scope="module")
def int8_graph(fp32_graph: onnx.ModelProto, calibration: onnx_int8.Calibration
               ) -> tuple[onnx.ModelProto, onnx_precision.TransformInfo]:
    return onnx_int8.to_int8(fp32_graph, calibration)


def test_int8_is_static_qdq_outside_the_frontend(int8_graph: tuple[onnx.ModelProto, onnx_precision.TransformInfo],
                                                 fp32_graph: onnx.ModelProto) -> None:
    model, info = int8_graph
    qdq = [n for n in model.graph.node if n.op_type in QDQ_OPS]
    assert {n.op_type for n in qdq} == set(QDQ_OPS)
    assert not [n for n in model.graph.node if n.op_type.startswith("DynamicQuantize")]
    frontend = set(onnx_precision.frontend_node_names(fp32_graph))
    assert info.frontend_nodes == len(frontend) > 0
    assert frontend <= {n.name for n in model.graph.node}  # the frontend is still there, by name
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:  # no frontend node reads a dequantised tensor: it computes in fp32
        if node.name in frontend:
            assert all(producers[i].op_type not in QDQ_OPS for i in node.input if i in producers), node.name


def test_int8_weights_keep_seven_bits(int8_graph: tuple[onnx.ModelProto, onnx_precision.TransformInfo]) -> None:
    """Full-range int8 weights saturate ``vpmaddubsw`` on CPUs without VNNI (ORT agreed with fp32 on 17.5 % of
    windows on an AVX2 Zen 1): every layer's quantised weights must fit in 7 bits, whatever CPU runs this test."""
    model, _ = int8_graph
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
               and t.dims and len(t.dims) >= 2]  # the per-channel MatMul weights; zero points are scalars or 1-d
    assert weights
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


def test_int8_metadata_and_ort_top1(int8_graph: tuple[onnx.ModelProto, onnx_precision.TransformInfo],
                                    onnx_path: Path, source: Source, tmp_path: Path) -> None:
    model, info = int8_graph
    out = tmp_path / "modelo_audio.int8.onnx"
    write_onnx(model, source, out, ExportOptions("int8"), transform=info)
    transform = read_metadata(out)["transform"]
    assert transform["quantizer"] == "nncf-static"
    assert transform["calibration_windows"] == CALIBRATION_WINDOWS
    assert transform["calibration_source"] == "test signals (no real audio)"
    edges, _ = edge_windows(source.spec.window_samples, source.wf.fbank_config.sample_rate)  # [4, S]
    noise = np.random.default_rng(3).uniform(-0.5, 0.5, (12, source.spec.window_samples)).astype(np.float32)
    windows = np.concatenate([edges, noise])  # [16, S]: not the calibration windows
    probs = {}
    for name, path in (("fp32", onnx_path), ("int8", out)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probs[name] = session.run(["probs"], {INPUT_NAME: windows})[0]  # [16, C]
    agreement = float(np.mean(probs["int8"].argmax(1) == probs["fp32"].argmax(1)))
    assert agreement >= VARIANT_TOP1_AGREEMENT


def test_signal_calibration_warns_once(source: Source, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        calibration = onnx_int8.calibration_for(source, CalibrationOptions(max_windows=2))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "synthetic" in warnings[0] and "--manifest" in warnings[0]
    assert calibration.windows.shape == (2, source.spec.window_samples)


def test_missing_nncf_is_one_line(weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError
    result = CliRunner().invoke(main, ["onnx", "--weights", str(weights), "--precision", "int8",
                                       "--out", str(tmp_path / "m.int8.onnx"), "--no-verify"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "pip install '.[export]'" in lines[-1]
    assert "Traceback" not in result.stderr and not (tmp_path / "m.int8.onnx").exists()


def test_serving_runs_the_int8_export_on_both_backends(
        int8_graph: tuple[onnx.ModelProto, onnx_precision.TransformInfo], onnx_path: Path, source: Source,
        tmp_path: Path) -> None:
    """``ast-serve``'s sessions read the QDQ graph: ``auto`` picks ORT int8 (select.py rule 2), OpenVINO runs
    it as int8, and both agree with the fp32 export on top-1 (serving imports no NNCF: test_packaging)."""
    from serving.session import ModelSession, SessionOptions

    model, info = int8_graph
    out = tmp_path / "modelo_audio.int8.onnx"
    write_onnx(model, source, out, ExportOptions("int8"), transform=info)
    windows = np.random.default_rng(4).uniform(-0.5, 0.5, (8, source.spec.window_samples)).astype(np.float32)
    ref = ModelSession(onnx_path, SessionOptions(device="cpu", backend="ort", intra_threads=1)).run(windows)[0]
    auto = ModelSession(out, SessionOptions(device="cpu", intra_threads=1))
    assert (auto.backend_name, auto.precision) == ("ort", "int8")
    backends = ["ort"] + (["openvino"] if importlib.util.find_spec("openvino") else [])
    for backend in backends:
        sess = ModelSession(out, SessionOptions(device="cpu", backend=backend, intra_threads=1))
        probs = sess.run(windows)[0]  # [8, C]
        assert sess.precision == "int8" and probs.shape == ref.shape
        assert float(np.mean(probs.argmax(1) == ref.argmax(1))) >= VARIANT_TOP1_AGREEMENT, backend
