"""ONNX artifact: contract (no DFT/STFT, checker, metadata, dynamic batch) and ORT parity at batch 1/3/8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ast_export.errors import ExportError
from ast_export.onnx_export import check_onnx, export_fp32_model, forbidden_nodes, write_onnx
from ast_export.registry import read_metadata
from ast_export.runners import CUDA_EP, eager_runner, gpu_present, onnx_runners
from ast_export.signals import edge_windows, signal_song
from ast_export.source import Source, eager_attention, load_source
from ast_export.spec import DEFAULT_OPSET
from serving.contract import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES
from tests.export.conftest import LABELS, random_weights
from tests.tolerances import ORT_EMBED_MAX_ABS, ORT_PROBS_MAX_ABS

BATCH_SIZES = (1, 3, 8)


def _windows(source: Source, n: int = 8) -> np.ndarray:
    """Test-signal windows (chords, a chirp, noise) plus noise, silence, clipping and a chirp: [n + 4, S]."""
    s = source.spec.window_samples
    song = signal_song(7, 16000, seconds=(s * n // 2 + s) / 16000)
    hop = s // 2
    windows = np.stack([song[i * hop:i * hop + s] for i in range(n)])
    edges, _ = edge_windows(s, 16000)
    return np.concatenate([windows, edges]).astype(np.float32)


def test_no_dft_node_and_checker_passes(onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    assert forbidden_nodes(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"DFT", "STFT"}
    onnx.checker.check_model(model, full_check=True)
    assert onnx_path.with_name(onnx_path.name + ".data").exists() is False  # one self-contained file


def test_metadata_and_io(onnx_path: Path, source: Source) -> None:
    meta = read_metadata(onnx_path)
    assert meta["labels"] == LABELS and meta["sample_rate"] == 16000
    assert meta["window_samples"] == source.spec.window_samples
    assert meta["hop_samples"] == source.spec.window_samples // 2
    assert meta["format_version"] == 1 and meta["precision"] == "fp32" and meta["opset"] >= 18
    assert meta["weights_sha256"] == source.sha256
    assert {"fbank_config", "model_config", "norm", "exporter_version"} <= set(meta)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    batch, width = sess.get_inputs()[0].shape
    assert isinstance(batch, str) and width == source.spec.window_samples  # batch is dynamic
    assert METADATA_KEY in sess.get_modelmeta().custom_metadata_map


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_ort_cpu_parity(onnx_path: Path, source: Source, batch: int) -> None:
    runner = onnx_runners(onnx_path, threads=1)[0][0]
    eager = eager_runner(source.model)
    x = _windows(source)[:batch]
    got, ref = runner(x), eager(x)
    assert got["probs"].shape == (batch, len(LABELS))
    assert got["embedding"].shape == (batch, source.spec.embed_dim)
    assert np.abs(got["probs"] - ref["probs"]).max() <= ORT_PROBS_MAX_ABS
    assert np.abs(got["embedding"] - ref["embedding"]).max() <= ORT_EMBED_MAX_ABS
    np.testing.assert_array_equal(got["probs"].argmax(1), ref["probs"].argmax(1))


def test_avg_pool_model_exports_with_parity(tmp_path: Path) -> None:
    """tiny's default pooling (mean of the patch tokens) through the same export path, batch 3."""
    source = load_source(random_weights(tmp_path / "avg.pth", global_pool="avg"))
    model, _ = export_fp32_model(source, DEFAULT_OPSET)
    out = tmp_path / "avg.onnx"
    write_onnx(model, source, out)
    x = _windows(source)[:3]
    got, ref = onnx_runners(out, threads=1)[0][0](x), eager_runner(source.model)(x)
    assert np.abs(got["probs"] - ref["probs"]).max() <= ORT_PROBS_MAX_ABS
    assert np.abs(got["embedding"] - ref["embedding"]).max() <= ORT_EMBED_MAX_ABS


HAS_CUDA = CUDA_EP in ort.get_available_providers() and gpu_present()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and the CUDA EP (CI has neither)")
def test_ort_cuda_parity(onnx_path: Path, source: Source) -> None:
    runners, skipped = onnx_runners(onnx_path)
    cuda = [r for r in runners if r.name == "ort-cuda"]
    assert cuda, f"CUDA EP present but not used: {skipped}"
    x = _windows(source)
    got, ref = cuda[0](x), eager_runner(source.model)(x)
    assert np.abs(got["probs"] - ref["probs"]).max() <= ORT_PROBS_MAX_ABS
    assert np.abs(got["embedding"] - ref["embedding"]).max() <= ORT_EMBED_MAX_ABS


def _dft_model(in_function: bool) -> onnx.ModelProto:
    h = onnx.helper
    x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 1])
    y = h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    dft = h.make_node("DFT", ["x"], ["y"], name="the_dft")
    if not in_function:
        return h.make_model(h.make_graph([dft], "g", [x], [y]), opset_imports=[h.make_opsetid("", 18)])
    func = h.make_function("local", "F", ["x"], ["y"], [dft], [h.make_opsetid("", 18)])
    call = h.make_node("F", ["x"], ["y"], domain="local")
    return h.make_model(h.make_graph([call], "g", [x], [y]), functions=[func],
                        opset_imports=[h.make_opsetid("", 18), h.make_opsetid("local", 1)])


@pytest.mark.parametrize("in_function", [False, True])
def test_dft_node_is_rejected(in_function: bool) -> None:
    model = _dft_model(in_function)
    assert forbidden_nodes(model)
    with pytest.raises(ExportError, match="DFT"):
        check_onnx(model)


def test_eager_reference_is_deterministic(source: Source) -> None:
    x = torch.from_numpy(_windows(source)[:2])
    with torch.no_grad():
        a, b = source.model(x), source.model(x)
    assert torch.equal(a[0], b[0])


def _attention_flags(model: torch.nn.Module) -> list[bool]:
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def test_export_leaves_the_callers_attention_setting(fp32_graph: onnx.ModelProto, source: Source) -> None:
    """The exporter switches to explicit attention only for the export; ``source.model`` keeps SDPA."""
    assert fp32_graph.graph.node  # the session export of ``source`` has run
    flags = _attention_flags(source.model)
    assert flags and all(flags)


def test_eager_attention_restores_on_failure(source: Source) -> None:
    model = source.model.ast
    model.blocks[0].attn.fused_attn = False  # a mixed setting must come back exactly
    try:
        before = _attention_flags(model)
        with pytest.raises(RuntimeError, match="boom"), eager_attention(model):
            assert not any(_attention_flags(model))
            raise RuntimeError("boom")
        assert _attention_flags(model) == before
    finally:
        model.set_fused_attn(True)
