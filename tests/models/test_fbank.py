"""KaldiFbank vs torchaudio.compliance.kaldi.fbank (the AST call), float64 and float32, plus export-safety."""

from __future__ import annotations

import collections

import pytest
import torch
import torchaudio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import FbankConfig, KaldiFbank
from tests import tolerances as tol
from tests.models.signals import music, silence, square

LENGTHS = (400, 401, 16000, 64240, 52800)  # one frame, one frame + 1, 1 s, the tiny window, 3.3 s


def reference(wave: torch.Tensor) -> torch.Tensor:
    """The official AST frontend for one waveform ``[S]`` -> ``[F, 128]``."""
    wave = wave - wave.mean()  # [S]
    return torchaudio.compliance.kaldi.fbank(
        wave[None], htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
        num_mel_bins=128, dither=0.0, frame_shift=10,
    )  # [F, 128]


@pytest.fixture(scope="module")
def fbank() -> KaldiFbank:
    return KaldiFbank(FbankConfig())


def diffs(fbank: KaldiFbank, waves: list[torch.Tensor], dtype: torch.dtype) -> tuple[float, float]:
    """Max and mean abs difference, batched ours vs per-row reference, all rows the same length."""
    batch = torch.stack(waves).to(dtype)  # [B, S]
    ours = fbank.to(dtype)(batch)  # [B, F, M]
    ref = torch.stack([reference(row) for row in batch])  # [B, F, M]
    assert ours.shape == ref.shape and ours.dtype == dtype
    err = (ours.double() - ref.double()).abs()  # [B, F, M]
    return err.max().item(), err.mean().item()


SIGNALS = {
    "music": lambda n: music(n),
    "silence": silence,
    "clipping": square,
    "quiet": lambda n: music(n, seed=1, amplitude=1e-5),  # every mel energy is below the log floor
    "soft": lambda n: music(n, seed=2, amplitude=1e-3),  # about half the mel energies straddle the floor
}


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_parity_float64(fbank: KaldiFbank, kind: str, length: int) -> None:
    max_abs, _ = diffs(fbank, [SIGNALS[kind](length)], torch.float64)
    assert max_abs <= tol.FBANK_F64_MAX_ABS


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("kind", sorted(SIGNALS))
def test_parity_float32(fbank: KaldiFbank, kind: str, length: int) -> None:
    max_abs, mean_abs = diffs(fbank, [SIGNALS[kind](length)], torch.float32)
    assert max_abs <= tol.FBANK_F32_MAX_ABS
    assert mean_abs <= tol.FBANK_F32_MEAN_ABS


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_of_different_signals(fbank: KaldiFbank, dtype: torch.dtype) -> None:
    n = 16000
    waves = [music(n, seed=3), silence(n), square(n), music(n, seed=4, amplitude=1e-5), 0.3 * square(n, 1000.0)]
    max_abs, mean_abs = diffs(fbank, waves, dtype)
    if dtype == torch.float64:
        assert max_abs <= tol.FBANK_F64_MAX_ABS
    else:
        assert max_abs <= tol.FBANK_F32_MAX_ABS and mean_abs <= tol.FBANK_F32_MEAN_ABS


def test_rows_are_independent(fbank: KaldiFbank) -> None:
    waves = torch.stack([music(8000, seed=5), square(8000)]).float()  # [2, S]
    both = fbank.float()(waves)  # [2, F, M]
    assert torch.equal(both[1], fbank(waves[1:])[0])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    length=st.integers(min_value=400, max_value=6000),
    amplitude=st.floats(min_value=1e-4, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_parity_random_lengths_and_amplitudes(length: int, amplitude: float, seed: int) -> None:
    fbank = KaldiFbank(FbankConfig())
    gen = torch.Generator().manual_seed(seed)
    wave = amplitude * (2 * torch.rand(length, generator=gen, dtype=torch.float64) - 1)  # [S]
    wave = wave + music(length, seed=seed, amplitude=amplitude)  # [S]
    assert diffs(fbank, [wave], torch.float64)[0] <= tol.FBANK_F64_MAX_ABS
    max_abs, mean_abs = diffs(fbank, [wave], torch.float32)
    assert max_abs <= tol.FBANK_F32_MAX_ABS and mean_abs <= tol.FBANK_F32_MEAN_ABS


def test_frame_count_and_shape(fbank: KaldiFbank) -> None:
    for length in LENGTHS:
        out = fbank.float()(torch.zeros(2, length))  # [2, F, M]
        assert out.shape == (2, 1 + (length - 400) // 160, 128) == (2, fbank.num_frames(length), 128)


@pytest.mark.parametrize("shape", [(400,), (1, 1, 400), (2, 399), (1, 0)])
def test_bad_input_raises_value_error(fbank: KaldiFbank, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        fbank(torch.zeros(shape))


def test_integer_input_raises_value_error(fbank: KaldiFbank) -> None:
    with pytest.raises(ValueError, match="floating"):
        fbank(torch.zeros(1, 400, dtype=torch.int16))


def test_dither_is_refused() -> None:
    with pytest.raises(ValueError, match="dither"):
        KaldiFbank(FbankConfig(dither=1.0))


def test_tables_follow_dtype_and_stay_out_of_state_dict() -> None:
    fbank = KaldiFbank(FbankConfig())
    assert fbank.basis.dtype == torch.float32 and fbank.basis.shape == (400, 512)
    assert fbank.mel.shape == (256, 128)
    fbank.double()
    assert fbank.basis.dtype == fbank.mel.dtype == torch.float64
    exact = KaldiFbank(FbankConfig())._tables(torch.float64, None)[0]  # [N, 2K]
    assert torch.equal(fbank.basis, exact)  # rebuilt in float64, not widened from float32
    assert fbank.state_dict() == {}


def test_trace_has_no_fft_or_strided_ops() -> None:
    fbank = KaldiFbank(FbankConfig()).float()
    wave = music(16000).float()[None].repeat(2, 1)  # [2, S]
    traced = torch.jit.trace(fbank, (wave,))
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert not {k for k in kinds if "fft" in k or "stft" in k or "as_strided" in k}
    other = torch.stack([square(16000), music(16000, seed=9)]).float()  # [2, S]
    assert torch.equal(traced(other), fbank(other))


def test_onnx_export_dynamic_batch_without_dft(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    fbank = KaldiFbank(FbankConfig()).float().eval()
    wave = music(16000).float()[None].repeat(2, 1)  # [2, S]
    program = torch.onnx.export(
        fbank, (wave,), dynamo=True, opset_version=18, input_names=["waveform"], output_names=["fbank"],
        dynamic_shapes={"waveform": {0: torch.export.Dim("batch")}}, verbose=False,
    )
    ops = collections.Counter(node.op_type for node in program.model_proto.graph.node)
    assert not {"DFT", "STFT"} & set(ops), ops
    path = tmp_path / "fbank.onnx"
    program.save(str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    batch = torch.stack([music(16000, seed=s).float() for s in range(3)])  # [3, S]
    (out,) = session.run(None, {"waveform": batch.numpy()})
    ref = torch.stack([reference(row) for row in batch])  # [3, F, M]
    err = (torch.from_numpy(out) - ref).abs()
    assert err.max() <= tol.FBANK_F32_MAX_ABS and err.mean() <= tol.FBANK_F32_MEAN_ABS
