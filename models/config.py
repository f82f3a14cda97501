"""Configuration dataclasses for the Kaldi frontend and the AST encoder, with named presets (model sizes).

Field names of :class:`FbankConfig` follow Kaldi / ``torchaudio.compliance.kaldi.fbank`` verbatim, so a
config maps one-to-one onto the reference call used in the parity tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# AudioSet statistics of the official AST recipe; applied as (x - mean) / (2 * std).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


@dataclass(frozen=True)
class FbankConfig:
    """Kaldi log-mel filterbank options (the call AST uses)."""

    sample_rate: int = 16000
    frame_length: float = 25.0  # ms
    frame_shift: float = 10.0  # ms
    num_mel_bins: int = 128
    preemphasis_coefficient: float = 0.97
    remove_dc_offset: bool = True
    round_to_power_of_two: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0 means offset from Nyquist, as in Kaldi
    window_type: str = "hanning"
    htk_compat: bool = True
    dither: float = 0.0
    use_log_fbank: bool = True
    use_power: bool = True

    @property
    def window_size(self) -> int:
        """Samples per frame (400 at 16 kHz)."""
        return int(self.sample_rate * self.frame_length * 0.001)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz)."""
        return int(self.sample_rate * self.frame_shift * 0.001)

    @property
    def padded_window_size(self) -> int:
        """FFT length: the frame rounded up to a power of two (512)."""
        size = self.window_size
        return 1 << (size - 1).bit_length() if self.round_to_power_of_two else size


@dataclass(frozen=True)
class ASTConfig:
    """Audio Spectrogram Transformer hyper-parameters."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    fstride: int = 10  # patch stride along mel bins
    tstride: int = 10  # patch stride along frames
    num_mel_bins: int = 128
    target_frames: int = 1024  # frames the encoder sees; the wrapper pads/crops to this
    num_classes: int = 527
    dist_token: bool = True  # DeiT-style distillation token, as in AST
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    # The classifier's LayerNorm (``head_norm``); None = ``layer_norm_eps``. Official AST checkpoints need 1e-5:
    # their ``mlp_head`` is a torch-default LayerNorm while the DeiT blocks use 1e-6.
    head_norm_eps: float | None = None
    # Pooled embedding: "token" = mean of the cls and dist tokens (AST; needed by imported checkpoints),
    # "avg" = mean of the patch tokens (learns faster from scratch on small catalogues).
    global_pool: str = "token"
    # The exported ``embedding``: 0 = the pooled tokens themselves (L2-normalised); > 0 = a learned fingerprint
    # projection of the pooled tokens to this many dimensions (an MLP, as in neural audio fingerprinting; 128 is
    # the field's usual size), trained contrastively so that a song's window lies close to the record's.
    fp_dim: int = 0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (frequency, time)."""
        f = (self.num_mel_bins - self.patch_size) // self.fstride + 1
        t = (self.target_frames - self.patch_size) // self.tstride + 1
        return f, t

    @property
    def head_eps(self) -> float:
        """The eps ``head_norm`` uses: ``head_norm_eps`` when set, else ``layer_norm_eps``."""
        return self.layer_norm_eps if self.head_norm_eps is None else self.head_norm_eps

    @property
    def embedding_dim(self) -> int:
        """Width of the exported ``embedding`` output."""
        return self.fp_dim or self.embed_dim

    @property
    def num_prefix_tokens(self) -> int:
        return 2 if self.dist_token else 1


PRESETS: dict[str, ASTConfig] = {
    # Fast on 2 CPU cores: non-overlapping 16x16 patches over 4.0 s windows (8 x 25 = 200 patches). Average
    # pooling: on the demo it learns faster from scratch than the token pool (+4 to +6 points test top-1 on
    # two seeds, README "Accuracy").
    "tiny": ASTConfig(embed_dim=192, depth=4, num_heads=3, fstride=16, tstride=16, target_frames=400,
                      global_pool="avg"),
    # Overlapping patches on 6.4 s windows.
    "small": ASTConfig(embed_dim=384, depth=6, num_heads=6, fstride=12, tstride=12, target_frames=640),
    # AST-base (Gong et al. 2021): 768-d, 12 layers, 12 heads, 16x16 patches, stride 10, 1024 frames.
    "base": ASTConfig(),
}


def get_config(name: str, **overrides: Any) -> ASTConfig:
    """Return the named preset, optionally with fields replaced (e.g. ``num_classes``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def window_samples(fbank: FbankConfig, ast: ASTConfig) -> int:
    """Waveform length whose Kaldi framing (snip_edges) yields exactly ``ast.target_frames`` frames."""
    return (ast.target_frames - 1) * fbank.window_shift + fbank.window_size


def config_to_dict(cfg: FbankConfig | ASTConfig) -> dict[str, Any]:
    """Plain-dict form for weights files and export metadata."""
    return dataclasses.asdict(cfg)


def fbank_config_from_dict(data: dict[str, Any]) -> FbankConfig:
    return FbankConfig(**_known_fields(FbankConfig, data))


def ast_config_from_dict(data: dict[str, Any]) -> ASTConfig:
    return ASTConfig(**_known_fields(ASTConfig, data))


def _known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    return dict(data)
