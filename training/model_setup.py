"""Everything the loop needs before its first step: the model (fresh or ``--init-from``), norm stats, and
the provenance recorded in the weights file (data fingerprint, software versions).

``--init-from`` rules (decided here, documented in the README):

* The architecture (width, depth, heads, patch size, MLP ratio, tokens, pooling) and the LayerNorm eps come
  from the init file. Without ``--preset`` the whole model config comes from it; with ``--preset`` the frame
  count and patch strides come from the named preset and the position embedding is resampled to the new
  patch grid (``models.resize_pos_embed``). Mismatched widths/depths are an :class:`InitError`.
* The head is kept when the label list is identical (same names, same order) and freshly initialised
  otherwise (``head_norm`` is always kept: it is part of the pooled representation).
* The fbank config and the norm stats come from the init file (the model was trained on them).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models import (
    WEIGHTS_FORMAT,
    ASTConfig,
    FbankConfig,
    KaldiFbank,
    ScoringModel,
    WeightsFile,
    get_config,
    load_weights,
    resize_pos_embed,
)
from models.hub import resolve_weights
from training.data.manifest import Manifest
from training.errors import ConfigError

logger = logging.getLogger(__name__)

# Fields the target model takes from the init file whatever --preset names: those that shape the parameters,
# and the LayerNorm eps the weights were trained with (HF: 1e-12 everywhere; official AST: 1e-6, head 1e-5).
ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "num_mel_bins", "dist_token",
               "qkv_bias", "layer_norm_eps", "head_norm_eps", "global_pool")
HEAD_KEYS = ("head.weight", "head.bias")
FP_HEAD_PREFIX = "fp_head."  # a fingerprint projection the init file lacks starts fresh
NORM_BATCH = 32  # windows per fbank call while estimating norm stats


class InitError(ValueError):
    """The ``--init-from`` weights cannot seed the requested model."""


@dataclass
class ModelSpec:
    """Resolved model: configs, labels, norm stats and the initial AST state (None = fresh init)."""

    fbank_cfg: FbankConfig
    ast_cfg: ASTConfig
    labels: list[str]
    norm: tuple[float, float] | None  # None: estimate from the training data
    state_dict: dict[str, torch.Tensor] | None = None
    init_from: str | None = None

    def build(self) -> ScoringModel:
        """The ScoringModel (train mode) with the initial state loaded, if any."""
        if self.norm is None:
            raise ValueError("norm stats must be set before building the model")
        model = ScoringModel(self.fbank_cfg, self.ast_cfg, *self.norm)
        if self.state_dict is not None:
            missing, unexpected = model.ast.load_state_dict(self.state_dict, strict=False)
            fresh = set(HEAD_KEYS) | {k for k in missing if k.startswith(FP_HEAD_PREFIX)}
            if unexpected or set(missing) - fresh:
                raise InitError(f"init weights do not fit: missing {missing}, unexpected {unexpected}")
        return model.train()


def check_model_overrides(overrides: dict[str, Any]) -> None:
    """``TrainConfig.model_overrides`` (from a config file, say) must name :class:`models.ASTConfig` fields.

    Raises:
        ConfigError: an unknown field, with the closest known one.
    """
    names = [f.name for f in dataclasses.fields(ASTConfig)]
    for key in overrides:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown model_overrides field {key!r}{hint}")


def fresh_spec(preset: str, labels: list[str], overrides: dict[str, Any]) -> ModelSpec:
    """A randomly initialised model of the named preset, one class per label.

    Raises:
        ConfigError: ``overrides`` names an unknown ASTConfig field.
    """
    check_model_overrides(overrides)
    ast_cfg = get_config(preset, num_classes=len(labels), **overrides)
    return ModelSpec(FbankConfig(), ast_cfg, list(labels), norm=None)


def init_spec(init_from: str, preset: str | None, labels: list[str], overrides: dict[str, Any],
              sha256: str | None = None) -> ModelSpec:
    """A model seeded from a weights file (see the module docstring for the rules).

    Raises:
        InitError: architecture mismatch or no such file; models.WeightsError: unreadable file;
            models.hub.HubError: hash mismatch or failed download; ConfigError: unknown ``overrides`` field.
    """
    check_model_overrides(overrides)
    path = resolve_weights(init_from, sha256)  # a path or URL; hash-checked when given
    if not path.is_file():
        raise InitError(f"--init-from {init_from}: no such file")
    wf = load_weights(path)
    src = wf.model_config
    target = src if preset is None else get_config(preset)
    target = dataclasses.replace(target, **{f: getattr(src, f) for f in ARCH_FIELDS})
    target = dataclasses.replace(target, num_classes=len(labels), **overrides)
    state = dict(wf.state_dict)
    if target.grid != src.grid:
        logger.info("init-from: resampling pos_embed from grid %s to %s", src.grid, target.grid)
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], src.grid, target.grid, src.num_prefix_tokens)
    if list(wf.labels) != list(labels):
        logger.info("init-from: label set differs (%d -> %d labels); new classifier head",
                    len(wf.labels), len(labels))
        for key in HEAD_KEYS:
            state.pop(key, None)
    return ModelSpec(wf.fbank_config, target, list(labels), (wf.norm_mean, wf.norm_std), state, init_from)


def estimate_norm(fbank_cfg: FbankConfig, windows: Any, count: int) -> tuple[float, float]:
    """Mean and std of the raw log-mel over the first ``count`` items of a window dataset.

    ``windows[i]`` returns ``(waveform [S], label)``; the AST recipe normalises with dataset stats.
    """
    fbank = KaldiFbank(fbank_cfg)
    total = total_sq = 0.0
    n = 0
    count = min(count, len(windows))
    with torch.inference_mode():
        for start in range(0, count, NORM_BATCH):
            stop = min(count, start + NORM_BATCH)
            batch = torch.stack([torch.as_tensor(windows[i][0]) for i in range(start, stop)])  # [B, S]
            feats = fbank(batch.float()).double()  # [B, F, M]
            total += float(feats.sum())
            total_sq += float((feats * feats).sum())
            n += feats.numel()
    if n == 0:
        raise ValueError("no training windows to estimate the fbank norm stats from")
    mean = total / n
    std = max(total_sq / n - mean * mean, 0.0) ** 0.5
    return float(mean), float(max(std, 1e-5))


def data_fingerprint(manifest_path: Path, manifest: Manifest) -> str:
    """SHA-256 of the manifest bytes, records.csv bytes, and every referenced file's path and size."""
    digest = hashlib.sha256()
    digest.update(Path(manifest_path).read_bytes())
    records_csv = Path(manifest_path).parent / "records.csv"
    if records_csv.is_file():
        digest.update(records_csv.read_bytes())
    files = sorted({e.path for e in manifest.entries} | set(manifest.records.values()))
    for path in files:
        name = path.relative_to(manifest.root) if path.is_relative_to(manifest.root) else path
        digest.update(f"{name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions of the libraries that shape the result."""
    import timm
    import torchaudio

    # str(): torch.__version__ is a TorchVersion, which torch.load(weights_only=True) refuses.
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchaudio": str(torchaudio.__version__), "timm": str(timm.__version__), "numpy": str(np.__version__)}


def weights_file(spec: ModelSpec, state_dict: dict[str, torch.Tensor], train: dict[str, Any]) -> WeightsFile:
    """The :class:`models.WeightsFile` of a trained model."""
    if spec.norm is None:
        raise ValueError("norm stats are not set")
    return WeightsFile(format=WEIGHTS_FORMAT, model_config=spec.ast_cfg, fbank_config=spec.fbank_cfg,
                       labels=list(spec.labels), norm_mean=spec.norm[0], norm_std=spec.norm[1],
                       state_dict={k: v.detach().cpu().clone() for k, v in state_dict.items()}, train=train)
