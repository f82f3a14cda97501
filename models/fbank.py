"""Batched, export-friendly Kaldi log-mel filterbank (the AST frontend).

Reproduces ``torchaudio.compliance.kaldi.fbank(wav - wav.mean(), htk_compat=True, use_energy=False,
window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)`` -- the call of the official AST
recipe -- for a batch of waveforms at once, with ops that trace and export to ONNX without DFT/STFT nodes.

Pipeline, in Kaldi's order (as in ``torchaudio/compliance/kaldi.py``):

    mean removal -> framing -> [DC removal -> pre-emphasis -> window + zero-pad + DFT] -> power -> mel -> log

The bracketed steps are all linear in the frame, so they are one precomputed matrix (one matmul).

Differences from torchaudio, all deliberate:

* Batched ``[B, S]`` input; framing with ``Tensor.unfold`` (exported as a constant-index ``Gather``), never
  ``as_strided``.
* Per-frame DC removal, pre-emphasis, window, zero-padding and the real DFT are one matmul with a basis
  ``[window_size, 2 * K]`` composed in float64 (``K = padded_window_size // 2`` bins: cos block then sin
  block). The zero-padded samples contribute nothing, so they are simply absent from the basis. The
  Nyquist bin is dropped because Kaldi's mel banks give it zero weight (torchaudio pads the mel matrix
  with a zero column for it).
* The constant tables are derived from the config and re-derived whenever the module changes dtype or
  device (see :meth:`KaldiFbank._apply`), so ``.double()`` gets a float64 DFT basis rather than float32
  entries widened to float64. The mel filters are float32-rounded on purpose, as in torchaudio (see
  :func:`mel_banks`). Both are non-persistent buffers: not in ``state_dict``.
* ``ValueError`` (not ``assert``) for bad input; ``dither`` must be 0 (the frontend is deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from models.config import FbankConfig

# Kaldi's log floor: torchaudio uses float32 machine epsilon whatever the input dtype.
LOG_FLOOR = torch.finfo(torch.float32).eps
# HTK mel scale: mel(f) = MEL_SCALE * ln(1 + f / MEL_BREAK_HZ).
MEL_SCALE = 1127.0
MEL_BREAK_HZ = 700.0
# Kaldi's default blackman coefficient (not a FbankConfig field; only used for window_type="blackman").
BLACKMAN_COEFF = 0.42
WINDOW_TYPES = ("hanning", "hamming", "povey", "rectangular", "blackman")


def mel_scale(freq: torch.Tensor) -> torch.Tensor:
    """HTK mel scale, as Kaldi: ``1127 ln(1 + f / 700)``."""
    return MEL_SCALE * (1.0 + freq / MEL_BREAK_HZ).log()


def feature_window(window_type: str, window_size: int) -> torch.Tensor:
    """Kaldi window function, float64 ``[window_size]`` (symmetric: denominators use ``N - 1``)."""
    n = torch.arange(window_size, dtype=torch.float64)  # [N]
    a = 2 * math.pi / (window_size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * torch.cos(a * n)  # [N]
    if window_type == "hamming":
        return 0.54 - 0.46 * torch.cos(a * n)  # [N]
    if window_type == "povey":
        return (0.5 - 0.5 * torch.cos(a * n)).pow(0.85)  # [N]
    if window_type == "rectangular":
        return torch.ones(window_size, dtype=torch.float64)  # [N]
    if window_type == "blackman":
        return BLACKMAN_COEFF - 0.5 * torch.cos(a * n) + (0.5 - BLACKMAN_COEFF) * torch.cos(2 * a * n)  # [N]
    raise ValueError(f"unknown window_type {window_type!r}; choose one of {', '.join(WINDOW_TYPES)}")


def dft_basis(window: torch.Tensor, padded_window_size: int) -> torch.Tensor:
    """Windowed real-DFT basis ``[N, 2K]``: ``frames @ basis`` = [Re | Im] of the zero-padded frame's DFT.

    ``K = padded_window_size // 2`` bins (0 .. Nyquist-1). Angles are reduced modulo the DFT length in
    integer arithmetic so every entry is accurate to float64 rounding.
    """
    num_bins = padded_window_size // 2
    n = torch.arange(window.shape[0], dtype=torch.int64)  # [N]
    k = torch.arange(num_bins, dtype=torch.int64)  # [K]
    phase = (n[:, None] * k[None, :]) % padded_window_size  # [N, K]
    angle = phase.to(torch.float64) * (2 * math.pi / padded_window_size)  # [N, K]
    cos = window[:, None] * torch.cos(angle)  # [N, K]
    sin = -window[:, None] * torch.sin(angle)  # [N, K]
    return torch.cat([cos, sin], dim=1)  # [N, 2K]


def frame_operator(cfg: FbankConfig) -> torch.Tensor:
    """Per-frame DC removal then pre-emphasis as one float64 matrix ``[N, N]``: ``frame @ op``.

    DC removal is ``I - 1 1^T / N``; pre-emphasis ``y[j] = x[j] - c * x[max(0, j - 1)]`` (Kaldi replicates the
    first sample, so ``y[0] = (1 - c) x[0]``). Both are linear in the frame, which is why they fold into
    the DFT basis (see :meth:`KaldiFbank._tables`).
    """
    n = cfg.window_size
    op = torch.eye(n, dtype=torch.float64)  # [N, N]
    if cfg.remove_dc_offset:
        op = op - 1.0 / n  # [N, N]
    c = cfg.preemphasis_coefficient
    if c != 0.0:
        pre = torch.eye(n, dtype=torch.float64)  # [N, N]: column j builds y[j]
        pre[torch.arange(n - 1), torch.arange(1, n)] = -c  # y[j] -= c * x[j - 1]
        pre[0, 0] = 1.0 - c  # y[0] = x[0] - c * x[0]
        op = op @ pre  # [N, N]
    return op


def mel_banks(cfg: FbankConfig) -> torch.Tensor:
    """Kaldi triangular mel filters (``get_mel_banks`` without VTLN), ``[K, num_mel_bins]``.

    Computed in float32 with torchaudio's exact operation order: the reference frontend that AST models
    are trained with uses these float32-rounded filters (rounding moves them by up to ~1e-5), so
    reproducing them -- not a float64 ideal -- is what gives float64 parity at the 1e-12 level.
    """
    padded = cfg.padded_window_size
    num_bins = padded // 2
    nyquist = 0.5 * cfg.sample_rate
    high_freq = cfg.high_freq if cfg.high_freq > 0.0 else cfg.high_freq + nyquist
    if not 0.0 <= cfg.low_freq < high_freq <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist}; got {cfg.low_freq}, {high_freq}")
    mel_low = MEL_SCALE * math.log(1.0 + cfg.low_freq / MEL_BREAK_HZ)
    mel_high = MEL_SCALE * math.log(1.0 + high_freq / MEL_BREAK_HZ)
    delta = (mel_high - mel_low) / (cfg.num_mel_bins + 1)
    band = torch.arange(cfg.num_mel_bins, dtype=torch.float32)[:, None]  # [M, 1]
    left = mel_low + band * delta  # [M, 1]
    center = mel_low + (band + 1.0) * delta  # [M, 1]
    right = mel_low + (band + 2.0) * delta  # [M, 1]
    fft_freq = cfg.sample_rate / padded * torch.arange(num_bins, dtype=torch.float32)  # [K]
    fft_mel = mel_scale(fft_freq)[None]  # [1, K]
    up = (fft_mel - left) / (center - left)  # [M, K]
    down = (right - fft_mel) / (right - center)  # [M, K]
    return torch.minimum(up, down).clamp(min=0.0).T.contiguous()  # [K, M]


class KaldiFbank(nn.Module):
    """Kaldi log-mel filterbank for a batch: waveform ``[B, S]`` -> features ``[B, F, M]``.

    ``F = 1 + (S - window_size) // window_shift`` (Kaldi ``snip_edges=True``); ``M = num_mel_bins``.
    Each row has its own mean removed first, as AST does before calling Kaldi fbank.
    """

    def __init__(self, cfg: FbankConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or FbankConfig()
        if self.cfg.dither != 0.0:
            raise ValueError("KaldiFbank is deterministic: dither must be 0.0")
        if self.cfg.window_size < 2 or self.cfg.window_shift < 1:
            raise ValueError(f"frame_length/frame_shift too small for sample_rate {self.cfg.sample_rate}")
        basis, mel = self._tables(torch.float32, None)
        self.register_buffer("basis", basis, persistent=False)  # [N, 2K]
        self.register_buffer("mel", mel, persistent=False)  # [K, M]

    def _tables(self, dtype: torch.dtype, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
        window = feature_window(self.cfg.window_type, self.cfg.window_size)  # [N]
        # DC removal and pre-emphasis folded into the basis (float64, then cast): one matmul per frame.
        basis = frame_operator(self.cfg) @ dft_basis(window, self.cfg.padded_window_size)  # [N, 2K]
        mel = mel_banks(self.cfg)  # [K, M]
        return basis.to(device=device, dtype=dtype), mel.to(device=device, dtype=dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> KaldiFbank:
        # Rebuild the tables from float64 on dtype/device moves, so .double() is exact (not widened fp32).
        super()._apply(fn, recurse)
        basis, mel = self._tables(self.basis.dtype, self.basis.device)
        self.basis, self.mel = basis, mel
        return self

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi (``snip_edges=True``) produces for ``num_samples`` samples."""
        return 1 + (num_samples - self.cfg.window_size) // self.cfg.window_shift

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel features ``[B, F, M]`` of waveforms ``[B, S]`` (``S >= window_size``)."""
        if not torch.jit.is_tracing():  # shapes are static in a trace; checks there only emit warnings
            self._check_input(waveform)
        x = waveform - waveform.mean(dim=-1, keepdim=True)  # [B, S]
        frames = self._frames(x)  # [B, F, N]
        spectrum = self._spectrum(frames)  # [B, F, K]: DC removal, pre-emphasis, window, DFT, power
        mel = spectrum @ self.mel  # [B, F, M]
        if self.cfg.use_log_fbank:
            mel = mel.clamp(min=LOG_FLOOR).log()  # [B, F, M]
        return mel

    def _check_input(self, waveform: torch.Tensor) -> None:
        if waveform.dim() != 2:
            raise ValueError(f"waveform must be [batch, samples]; got shape {tuple(waveform.shape)}")
        if waveform.shape[-1] < self.cfg.window_size:
            raise ValueError(
                f"waveform has {waveform.shape[-1]} samples; need at least one frame "
                f"({self.cfg.window_size} samples at {self.cfg.sample_rate} Hz)"
            )
        if not waveform.is_floating_point():
            raise ValueError(f"waveform must be a floating-point tensor; got {waveform.dtype}")

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """Kaldi framing with ``snip_edges=True``: frames start every ``window_shift`` samples."""
        return x.unfold(-1, self.cfg.window_size, self.cfg.window_shift)  # [B, F, N]

    def _spectrum(self, frames: torch.Tensor) -> torch.Tensor:
        """DC removal + pre-emphasis + window + zero-pad + real DFT as one matmul, then power (or magnitude)."""
        num_bins = self.basis.shape[-1] // 2
        dft = frames @ self.basis  # [B, F, 2K]
        power = dft[..., :num_bins].square() + dft[..., num_bins:].square()  # [B, F, K]
        return power if self.cfg.use_power else power.sqrt()  # [B, F, K]
