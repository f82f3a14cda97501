"""fp16 / int8 / optimised ONNX graphs: they export, keep the frontend in fp32, and pass verification (int8's own
checks: test_int8.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from ast_export import onnx_int8, onnx_precision
from ast_export.metadata import artifact_precision
from ast_export.onnx_export import forbidden_nodes, write_onnx
from ast_export.options import CalibrationOptions, ExportOptions, VerifyOptions
from ast_export.registry import read_metadata
from ast_export.source import Source
from ast_export.verify import verify_artifact
from tests.export.conftest import TINY_DEPTH
from tests.tolerances import VARIANT_TOP1_AGREEMENT

CALIBRATION_WINDOWS = 8  # int8: a few windows keep NNCF's statistics pass short


def _derive(name: str, graph: onnx.ModelProto, source: Source) -> tuple[onnx.ModelProto, onnx_precision.TransformInfo]:
    cfg = source.wf.model_config
    if name == "fp16":
        return onnx_precision.to_fp16(graph)
    if name == "int8":
        calibration = onnx_int8.calibration_for(source, CalibrationOptions(max_windows=CALIBRATION_WINDOWS))
        return onnx_int8.to_int8(graph, calibration)
    return onnx_precision.optimize(graph, cfg.num_heads, cfg.embed_dim, cfg.depth)


@pytest.mark.parametrize("name", ["fp16", "int8", "optimize"])
def test_variant_exports_and_verifies(name: str, fp32_graph: onnx.ModelProto, source: Source,
                                      tmp_path: Path) -> None:
    model, info = _derive(name, fp32_graph, source)
    assert info.frontend_nodes > 0
    assert forbidden_nodes(model) == []
    out = tmp_path / f"modelo_audio.{name}.onnx"
    write_onnx(model, source, out, ExportOptions(info.precision, info.optimized), transform=info)
    meta = read_metadata(out)
    assert artifact_precision(meta) == (info.precision, info.optimized) == (meta["precision"], meta["optimized"])
    assert meta["transform"]["frontend_nodes"] == info.frontend_nodes
    report = verify_artifact(out, source, VerifyOptions(threads=1))
    assert report.passed, [c for c in report.checks if not c.passed]
    heldout = [c for c in report.checks if c.name == "held-out top-1 agreement"]
    if info.precision in ("fp16", "int8"):
        assert heldout and heldout[0].top1_agreement >= VARIANT_TOP1_AGREEMENT
    if name == "optimize":
        assert info.fused_attention and info.fused_attention > 0
        assert info.fused_attention <= TINY_DEPTH


def test_frontend_stays_fp32_in_fp16(fp32_graph: onnx.ModelProto) -> None:
    model, _ = onnx_precision.to_fp16(fp32_graph)
    frontend = set(onnx_precision.frontend_node_names(fp32_graph))
    before = {n.name: list(n.input) for n in fp32_graph.graph.node if n.name in frontend}
    after = {n.name: list(n.input) for n in model.graph.node if n.name in frontend}
    assert after == before  # same nodes reading the same tensors: no Cast slipped into the frontend
    init_types = {i.name: i.data_type for i in model.graph.initializer}
    for inputs in after.values():
        assert all(init_types.get(i) != onnx.TensorProto.FLOAT16 for i in inputs)
    assert any(t == onnx.TensorProto.FLOAT16 for t in init_types.values())  # the encoder did convert
