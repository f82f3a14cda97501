"""The thing being exported: a weights file, its eager scoring model, and the spec derived from both."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ast_export.spec import ExportSpec
from models import weights as model_weights
from models.hub import resolve_weights

logger = logging.getLogger(__name__)


@dataclass
class Source:
    """A loaded weights file and the eager ``ScoringModel`` built from it (eval mode, CPU, fp32)."""

    weights_path: Path
    wf: Any  # models.weights.WeightsFile
    model: torch.nn.Module
    sha256: str
    spec: ExportSpec


@dataclass
class ExportResult:
    """What an exporter wrote, and how long it took."""

    path: Path
    format: str
    precision: str
    seconds: float
    size_bytes: int
    metadata: dict[str, Any]
    notes: dict[str, Any] = field(default_factory=dict)
    optimized: bool = False


def load_source(weights_path: str | os.PathLike, sha256: str | None = None) -> Source:
    """Load a weights file (a path, or an ``http(s)://`` URL downloaded once into the cache by
    ``models.hub.resolve_weights``) and build the eager model.

    Raises:
        models.weights.WeightsError: unreadable file; models.hub.HubError: failed download or ``sha256``
        mismatch (checked for local files too).
    """
    path = resolve_weights(weights_path, sha256)
    wf = model_weights.load_weights(path)
    model = model_weights.build_scoring_model(wf).eval().float()
    ast_cfg = wf.model_config
    spec = ExportSpec(window_samples=int(model.window_samples), num_classes=len(wf.labels),
                      embed_dim=int(ast_cfg.embedding_dim))
    return Source(path, wf, model, model_weights.weights_sha256(path), spec)


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block, attention is explicit matmul/softmax so ORT's optimizer can recognise and fuse it.

    Every ``fused_attn`` flag (timm ``Attention`` blocks, which ``AST.set_fused_attn`` drives) gets its value
    back on exit, also when the export fails: the caller's model keeps the attention it had (SDPA by default).
    """
    flagged = [module for module in model.modules() if hasattr(module, "fused_attn")]
    before = [module.fused_attn for module in flagged]
    for module in flagged:
        module.fused_attn = False
    try:
        yield model
    finally:
        for module, flag in zip(flagged, before, strict=True):
            module.fused_attn = flag


def file_size(path: Path) -> int:
    return path.stat().st_size
