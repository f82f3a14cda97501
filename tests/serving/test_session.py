"""Model validation, providers and IO binding of ModelSession (CPU only; CUDA paths where present)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from serving.contract import ModelError, parse_metadata
from serving.session import CPU_EP, CUDA_EP, ModelSession, SessionOptions
from tests.serving.fake_model import LABELS, WINDOW, build_model, metadata

HAS_CUDA_EP = CUDA_EP in ort.get_available_providers()


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert text and "\n" not in text
    return text


def test_loads_and_scores(fake_model: Path) -> None:
    sess = ModelSession(fake_model, SessionOptions(device="cpu", intra_threads=1))
    assert sess.provider == CPU_EP and sess.labels == tuple(LABELS)
    probs, emb = sess.run(np.zeros((3, WINDOW), np.float32))
    assert probs.shape == (3, len(LABELS)) and emb.shape[0] == 3
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_io_binding_on_cpu_matches_plain_run(fake_model: Path) -> None:
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((5, WINDOW)) * 0.1).astype(np.float32)
    plain = ModelSession(fake_model, SessionOptions(device="cpu", io_binding=False)).run(waves)
    bound_sess = ModelSession(fake_model, SessionOptions(device="cpu", io_binding=True))
    assert bound_sess.io_binding
    bound = bound_sess.run(waves)
    for a, b in zip(plain, bound, strict=True):
        np.testing.assert_array_equal(a, b)


def test_auto_falls_back_to_cpu_with_one_log_line(fake_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="serving.session")
    sess = ModelSession(fake_model, SessionOptions(device="auto"))
    lines = [r.getMessage() for r in caplog.records if r.name == "serving.session"]
    assert len(lines) == 1 and sess.provider in lines[0]


def test_cuda_fails_clearly_without_gpu(fake_model: Path) -> None:
    try:
        sess = ModelSession(fake_model, SessionOptions(device="cuda"))
    except ModelError as err:
        assert "--device cuda" in str(err) and "\n" not in str(err)
    else:  # a machine with a working GPU: then CUDA must really be in use, with IO binding
        assert sess.provider == CUDA_EP and sess.io_binding
        probs, _ = sess.run(np.zeros((2, WINDOW), np.float32))
        assert probs.shape == (2, len(LABELS))


def _write(tmp_path: Path, **kwargs) -> Path:
    return build_model(tmp_path / "m.onnx", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"meta": None}, "no 'ast_sampleid' metadata"),
        ({"meta": metadata(format_version=99)}, "unknown metadata format_version 99"),
        ({"meta": metadata(labels=[])}, "labels"),
        ({"meta": metadata(window_samples=123)}, "metadata says 123"),
        ({"meta": metadata(hop_samples=0)}, "hop_samples"),
        ({"meta": metadata(labels=["a", "b"])}, "lists 2 labels"),
        ({"input_name": "audio"}, "expected ['waveform']"),
        ({"output_names": ("scores", "embedding")}, "lack ['probs']"),
    ],
)
def test_nonconforming_models_refused(tmp_path: Path, kwargs: dict, needle: str) -> None:
    path = _write(tmp_path, **kwargs)
    with pytest.raises(ModelError) as err:
        ModelSession(path, SessionOptions(device="cpu"))
    assert needle in _one_line(err)


def test_truncated_tampered_and_missing_models_refused(tmp_path: Path, fake_model: Path) -> None:
    data = fake_model.read_bytes()
    cases = {
        "truncated.onnx": data[: len(data) // 2],
        "random.onnx": np.random.default_rng(1).bytes(2048),
        "text.onnx": b"not a model\n",
        "empty.onnx": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ModelError) as err:
            ModelSession(tmp_path / name, SessionOptions(device="cpu"))
        _one_line(err)
    for bad in (tmp_path / "missing.onnx", tmp_path):
        with pytest.raises(ModelError) as err:
            ModelSession(bad, SessionOptions(device="cpu"))
        _one_line(err)


def test_metadata_json_problems() -> None:
    with pytest.raises(ModelError, match="not valid JSON"):
        parse_metadata("{oops")
    with pytest.raises(ModelError, match="JSON object"):
        parse_metadata("[1]")
    meta = parse_metadata(json.dumps(metadata()))
    assert meta.window_s == 1.0 and meta.hop_s == 0.5 and meta.raw["weights_sha256"] == "0" * 64


def test_unknown_device(fake_model: Path) -> None:
    with pytest.raises(ModelError, match="unknown device"):
        ModelSession(fake_model, SessionOptions(device="tpu"))


def test_wrong_window_shape_rejected(fake_model: Path) -> None:
    sess = ModelSession(fake_model, SessionOptions(device="cpu"))
    with pytest.raises(ValueError, match="expected"):
        sess.run(np.zeros((1, WINDOW + 1), np.float32))
