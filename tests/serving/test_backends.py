"""Backends (issue 14): OpenVINO vs ORT on the fake model, precision refusals, the auto rule, its one log line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from serving import session as session_mod
from serving.backends import PRECISIONS, artifact_precision
from serving.backends.ort import SPINNING_KEYS, OrtConfig, _session_options
from serving.backends.select import Choice, choose_cpu, cpu_flags, cpu_vendor
from serving.contract import ModelError
from serving.session import CPU_EP, ModelSession, SessionOptions
from tests.serving.fake_model import LABELS, WINDOW, build_model, metadata
from tests.tolerances import ORT_EMBED_MAX_ABS, ORT_PROBS_MAX_ABS, VARIANT_TOP1_AGREEMENT

AMX = frozenset({"avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8", "avx512_fp16"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16", "avx512_vnni"})
AVX2 = frozenset({"avx2", "fma"})
OLD = frozenset({"sse4_2", "avx"})
BF16_PROBS_MAX_ABS = 2e-2  # bf16 keeps 8 mantissa bits: ~0.4 % per value


def _waves(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gains = np.geomspace(1e-3, 1.0, n)[:, None]  # quiet to loud: spreads the fake model's log energies
    return (rng.standard_normal((n, WINDOW)) * gains).astype(np.float32)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert text and "\n" not in text
    return text


# ------------------------------------------------------------------------------------------ the auto rule
@pytest.mark.parametrize(
    ("flags", "artifact", "requested", "openvino", "expected"),
    [
        (AMX, "fp32", "auto", True, ("openvino", "bf16")),
        (AMX, "fp32", "auto", False, ("ort", "auto")),  # no openvino: ORT as exported
        (AVX512_BF16, "fp32", "auto", True, ("openvino", "fp32")),  # Intel bf16 without AMX: slower than fp32
        (AVX2, "fp32", "auto", True, ("openvino", "fp32")),  # Zen 1: OpenVINO f32 ahead of ORT (NOTES #41)
        (AVX2, "fp32", "fp32", True, ("openvino", "fp32")),
        (OLD, "fp32", "auto", True, ("ort", "auto")),  # no AVX2: the reference path
        (frozenset(), "fp32", "auto", True, ("ort", "auto")),
        (AMX, "int8", "auto", True, ("openvino", "int8")),  # int8 exports: OpenVINO on AVX512-VNNI
        (AVX2, "int8", "auto", True, ("ort", "int8")),  # ... ORT elsewhere
        (AVX2, "fp32", "bf16", True, ("openvino", "bf16")),  # the capability check is OpenVINO's
        (AMX, "fp32", "fp16", True, ("openvino", "fp16")),
        (AMX, "fp32", "fp32", True, ("openvino", "fp32")),
        (AMX, "fp32", "int8", True, ("ort", "int8")),  # ORT refuses: needs an int8 export
        (AMX, "int8", "fp32", True, ("ort", "fp32")),  # ORT refuses: an int8 export runs as exported
        (AMX, "fp16", "auto", True, ("openvino", "bf16")),
    ],
)
def test_auto_rule(flags: frozenset, artifact: str, requested: str, openvino: bool, expected: tuple) -> None:
    choice = choose_cpu(flags, artifact, requested, openvino)
    assert isinstance(choice, Choice) and (choice.backend, choice.precision) == expected
    assert choice.reason and "\n" not in choice.reason


def test_amd_with_avx512_bf16_picks_openvino_bf16() -> None:
    """Zen 4/5: bf16 dot products beat f32 there (NOTES #19); a forced --precision fp32 stays f32."""
    amd = choose_cpu(AVX512_BF16, "fp32", "auto", True, "AuthenticAMD")
    assert (amd.backend, amd.precision) == ("openvino", "bf16") and "AMD" in amd.reason
    assert choose_cpu(AVX512_BF16, "fp32", "fp32", True, "AuthenticAMD").precision == "fp32"
    assert choose_cpu(AVX512_BF16, "fp32", "auto", True, "GenuineIntel").precision == "fp32"
    zen3 = choose_cpu(AVX2, "fp32", "auto", True, "AuthenticAMD")  # no AVX-512: f32
    assert (zen3.backend, zen3.precision) == ("openvino", "fp32")


def test_cpu_vendor_parsing(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t: fpu\n")
    assert cpu_vendor(str(info)) == "AuthenticAMD" and cpu_vendor(str(tmp_path / "missing")) == ""


def test_int8_reason_names_vnni() -> None:
    assert "AVX512-VNNI" in choose_cpu(AMX, "int8", "auto", True).reason
    assert "avx_vnni" in choose_cpu(frozenset({"avx2", "avx_vnni"}), "int8", "auto", True).reason
    assert "no VNNI" in choose_cpu(AVX2, "int8", "auto", True).reason


def test_cpu_flags_parsing(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "serving.session"]


@pytest.mark.parametrize(("flags", "backend"), [(AMX, "openvino"), (AVX2, "openvino"), (OLD, "ort")])
def test_auto_session_follows_flags_with_one_line(fake_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture, flags: frozenset,
                                                  backend: str) -> None:
    pytest.importorskip("openvino")
    from serving.backends import openvino as ovb

    monkeypatch.setattr(session_mod, "cpu_flags", lambda: flags)
    # OpenVINO's plugin reads the same CPU: a faked AMX machine lists BF16 there too (on a real CPU without it, the
    # plugin compiles a bf16 hint at f32)
    monkeypatch.setattr(ovb, "capabilities", lambda: frozenset({"FP32", "INT8", "BF16"} if AMX <= flags else {"FP32"}))
    caplog.set_level(logging.INFO, logger="serving.session")
    sess = ModelSession(fake_model, SessionOptions(device="cpu", backend="auto"))
    lines = _log_lines(caplog)
    assert sess.backend_name == backend and len(lines) == 1
    assert sess.provider in lines[0] and sess.precision in lines[0]


def test_auto_without_openvino_uses_ort_and_says_why(fake_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(session_mod, "cpu_flags", lambda: AMX)
    monkeypatch.setattr(session_mod, "openvino_installed", lambda: False)
    caplog.set_level(logging.INFO, logger="serving.session")
    sess = ModelSession(fake_model, SessionOptions(device="auto", backend="auto"))
    lines = _log_lines(caplog)
    assert sess.provider == CPU_EP and sess.precision == "fp32"
    assert len(lines) == 1 and "openvino is not installed" in lines[0]


# ------------------------------------------------------------------------------------------ precisions
def test_unknown_backend_and_precision(fake_model: Path) -> None:
    with pytest.raises(ModelError, match="unknown backend"):
        ModelSession(fake_model, SessionOptions(backend="tensorrt"))
    with pytest.raises(ModelError, match="unknown precision"):
        ModelSession(fake_model, SessionOptions(precision="fp8"))
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "int8")


@pytest.mark.parametrize(("backend", "precision", "needle"), [
    ("ort", "bf16", "no bf16 path"),
    ("ort", "int8", "fp32 export"),
    ("ort", "fp16", "fp32 export"),
    ("openvino", "int8", "needs an int8 export"),
])
def test_impossible_precisions_are_one_line(fake_model: Path, backend: str, precision: str, needle: str) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino")
    with pytest.raises(ModelError) as err:
        ModelSession(fake_model, SessionOptions(device="cpu", backend=backend, precision=precision))
    assert needle in _one_line(err)


def test_openvino_refuses_a_precision_the_cpu_lacks(fake_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    from serving.backends import openvino as ovb

    monkeypatch.setattr(ovb, "capabilities", lambda: frozenset({"FP32", "INT8"}))
    with pytest.raises(ModelError) as err:
        ModelSession(fake_model, SessionOptions(device="cpu", backend="openvino", precision="bf16"))
    assert "no BF16 support" in _one_line(err)
    auto = ModelSession(fake_model, SessionOptions(device="cpu", backend="openvino"))
    assert auto.precision == "fp32"  # auto on a CPU without bf16


def test_openvino_cannot_run_on_cuda(fake_model: Path) -> None:
    with pytest.raises(ModelError, match="runs on the CPU"):
        ModelSession(fake_model, SessionOptions(device="cuda", backend="openvino"))


def test_int8_export_runs_at_int8_on_both(tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    del ov
    path = build_model(tmp_path / "int8.onnx", meta=metadata(precision="int8"))
    for backend in ("ort", "openvino"):
        sess = ModelSession(path, SessionOptions(device="cpu", backend=backend))
        assert sess.precision == "int8" and artifact_precision(sess.metadata) == "int8"
    with pytest.raises(ModelError, match="int8 export"):
        ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision="bf16"))


# ------------------------------------------------------------------------------------------ OpenVINO numerics
def test_openvino_fp32_matches_ort(fake_model: Path) -> None:
    pytest.importorskip("openvino")
    waves = _waves(16)
    ref_p, ref_e = ModelSession(fake_model, SessionOptions(device="cpu")).run(waves)
    sess = ModelSession(fake_model, SessionOptions(device="cpu", backend="openvino", precision="fp32"))
    assert sess.provider == "OpenVINO CPU" and sess.precision == "fp32" and not sess.io_binding
    probs, emb = sess.run(waves)
    assert probs.dtype == np.float32 and probs.shape == (16, len(LABELS))
    assert np.abs(probs - ref_p).max() <= ORT_PROBS_MAX_ABS
    assert np.abs(emb - ref_e).max() <= ORT_EMBED_MAX_ABS
    np.testing.assert_array_equal(probs.argmax(1), ref_p.argmax(1))


def test_openvino_dynamic_batch_and_outputs_are_copies(fake_model: Path) -> None:
    pytest.importorskip("openvino")
    sess = ModelSession(fake_model, SessionOptions(device="cpu", backend="openvino", precision="fp32"))
    first, _ = sess.run(_waves(3, seed=1))
    kept = first.copy()
    for n in (1, 7, 2):
        probs, emb = sess.run(_waves(n, seed=n))
        assert probs.shape == (n, len(LABELS)) and emb.shape[0] == n
    np.testing.assert_array_equal(first, kept)  # a later run did not overwrite an earlier answer


def _assert_refused_here(path: Path, precision: str) -> None:
    """On a CPU whose OpenVINO plugin lacks ``precision``, asking for it is a one-line ModelError naming it."""
    with pytest.raises(ModelError) as err:
        ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision=precision))
    message = str(err.value)
    assert "\n" not in message and f"--precision {precision}" in message and "no " in message


def test_openvino_bf16_top1_agrees(fake_model: Path) -> None:
    pytest.importorskip("openvino")
    from serving.backends.openvino import capabilities

    if "BF16" not in capabilities():  # this CPU cannot: the real refusal is what is checked
        _assert_refused_here(fake_model, "bf16")
        return
    waves = _waves(64, seed=3)
    ref, _ = ModelSession(fake_model, SessionOptions(device="cpu")).run(waves)
    probs, _ = ModelSession(fake_model, SessionOptions(device="cpu", backend="openvino", precision="bf16")).run(waves)
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= VARIANT_TOP1_AGREEMENT
    assert np.abs(probs - ref).max() <= BF16_PROBS_MAX_ABS


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"meta": None}, "no 'ast_sampleid' metadata"),
    ({"meta": metadata(window_samples=123)}, "metadata says 123"),
    ({"meta": metadata(labels=["a", "b"])}, "lists 2 labels"),
    ({"input_name": "audio"}, "expected ['waveform']"),
    ({"output_names": ("scores", "embedding")}, "lack ['probs']"),
])
def test_openvino_validates_like_ort(tmp_path: Path, kwargs: dict, needle: str) -> None:
    pytest.importorskip("openvino")
    path = build_model(tmp_path / "m.onnx", **kwargs)
    for backend in ("ort", "openvino"):
        with pytest.raises(ModelError) as err:
            ModelSession(path, SessionOptions(device="cpu", backend=backend))
        assert needle in _one_line(err)


def test_openvino_refuses_garbage_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    bad = tmp_path / "random.onnx"
    bad.write_bytes(np.random.default_rng(1).bytes(2048))
    for backend in ("openvino", "auto"):
        with pytest.raises(ModelError) as err:
            ModelSession(bad, SessionOptions(device="cpu", backend=backend))
        assert "cannot load model" in _one_line(err)


# ------------------------------------------------------------------------------------------ ORT threads
@pytest.mark.parametrize(("spinning", "value"), [(None, "0"), (False, "0"), (True, "1")])
def test_ort_spinning_option(spinning: bool | None, value: str) -> None:
    so = _session_options(OrtConfig(spinning=spinning), quiet=False)
    assert isinstance(so, ort.SessionOptions)
    for key in SPINNING_KEYS:
        assert so.get_session_config_entry(key) == value


# ------------------------------------------------------------------------------------------ frontend cut
def _conv_model(path: Path) -> Path:
    """The fake model's contract with a Conv: waveform -> frames (the 'frontend') -> Conv -> heads."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    frames, channels, dim = 40, 6, 8
    nodes = [
        helper.make_node("Reshape", ["waveform", "shape"], ["frames"]),  # [B, 1, F, W/F]
        helper.make_node("Mul", ["frames", "frames"], ["power"]),
        helper.make_node("Add", ["power", "eps"], ["power_eps"]),
        helper.make_node("Log", ["power_eps"], ["logpower"]),  # log compression, as the Kaldi frontend's
        helper.make_node("Conv", ["logpower", "kernel"], ["patches"]),  # [B, C, F, 1]
        helper.make_node("Flatten", ["patches"], ["flat"]),  # [B, C*F]
        helper.make_node("MatMul", ["flat", "w1"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("MatMul", ["flat", "w2"], ["proj"]),
        helper.make_node("LpNormalization", ["proj"], ["embedding"], axis=1, p=2),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 1, frames, WINDOW // frames], np.int64), "shape"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
        numpy_helper.from_array(rng.standard_normal((channels, 1, 1, WINDOW // frames)).astype(np.float32) * 0.05,
                                "kernel"),
        numpy_helper.from_array(rng.standard_normal((channels * frames, len(LABELS))).astype(np.float32) * 0.1,
                                "w1"),
        numpy_helper.from_array(rng.standard_normal((channels * frames, dim)).astype(np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes, "conv_fake", [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", WINDOW])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(LABELS)]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    import json

    helper.set_model_props(model, {"ast_sampleid": json.dumps(metadata())})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_keeps_the_frontend_f32(tmp_path: Path, precision: str) -> None:
    pytest.importorskip("openvino")
    from serving.backends.openvino import capabilities

    path = _conv_model(tmp_path / "conv.onnx")
    if {"bf16": "BF16", "fp16": "FP16"}[precision] not in capabilities():  # this CPU cannot: check the refusal
        _assert_refused_here(path, precision)
        return
    waves = _waves(32, seed=5)
    ref_p, ref_e = ModelSession(path, SessionOptions(device="cpu")).run(waves)
    sess = ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision=precision))
    assert sess.backend._front is not None  # cut at the Conv: the frontend compiled apart, at f32
    probs, emb = sess.run(waves)
    assert probs.shape == ref_p.shape and emb.shape == ref_e.shape
    assert (probs.argmax(1) == ref_p.argmax(1)).mean() >= VARIANT_TOP1_AGREEMENT
    fp32 = ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision="fp32"))
    assert fp32.backend._front is None
    assert np.abs(fp32.run(waves)[0] - ref_p).max() <= ORT_PROBS_MAX_ABS


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_streams_split_the_batch_with_the_same_answers(tmp_path: Path, precision: str) -> None:
    """``--streams 2`` runs each batch as two concurrent parts (frontend request, then encoder, per part):
    the same rows, in order, for any batch size."""
    pytest.importorskip("openvino")
    from serving.backends.openvino import capabilities

    path = _conv_model(tmp_path / "conv.onnx")
    if precision == "bf16" and "BF16" not in capabilities():  # this CPU cannot: check the refusal
        _assert_refused_here(path, precision)
        return
    one = ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision=precision))
    two = ModelSession(path, SessionOptions(device="cpu", backend="openvino", precision=precision, streams=2))
    assert (two.backend._front is not None) == (precision == "bf16")
    for n in (1, 2, 7, 16):
        waves = _waves(n, seed=n)
        (p1, e1), (p2, e2) = one.run(waves), two.run(waves)
        assert p2.shape == (n, len(LABELS)) and e2.shape == e1.shape
        np.testing.assert_allclose(p2, p1, atol=ORT_PROBS_MAX_ABS)
        np.testing.assert_allclose(e2, e1, atol=ORT_EMBED_MAX_ABS)
