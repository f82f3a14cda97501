"""Random-weight models with a sharpened head, their weights file, and the exported artifacts (cached).

Random weights give near-uniform probabilities, so top-1 "agreement" would be decided by noise. The head is
therefore replaced by a random projection of the *deviation* of each clip's head input from the mean over a
few calibration clips (bias = -W @ mean), scaled so the logits spread with std ``HEAD_LOGIT_STD`` across
classes. Top-1 then depends on what distinguishes one clip from another, as in a trained model, and
agreement measures whether a variant preserves that. Calibration clips are disjoint from the bench clips.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.synth import music_clips

log = logging.getLogger(__name__)

HEAD_LOGIT_STD = 4.0
CALIBRATION_SEED = 12345
WEIGHTS_FORMAT = "ast-sampleid/1"


@dataclass
class BenchModel:
    """One config's model and artifacts; ``artifacts`` maps kind -> path (``None``: export failed)."""

    config: str
    model: torch.nn.Module
    ast_cfg: object  # models.config.ASTConfig
    weights: Path
    window_samples: int
    artifacts: dict[str, Path | None] = field(default_factory=dict)
    export_log: dict[str, str] = field(default_factory=dict)

    @property
    def clip_seconds(self) -> float:
        return self.window_samples / 16000.0


def _head_inputs(model: torch.nn.Module, waves: np.ndarray) -> torch.Tensor:
    captured: list[torch.Tensor] = []
    hook = model.ast.head.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0].detach()))
    try:
        with torch.inference_mode():
            model(torch.from_numpy(waves))
    finally:
        hook.remove()
    return captured[0].float()  # [N, D]


def sharpen_head(model: torch.nn.Module, calib: np.ndarray, seed: int = 0) -> None:
    """Replace ``model.ast.head`` by a centred random projection whose logits spread (see module doc)."""
    feats = _head_inputs(model, calib)  # [N, D]
    mean = feats.mean(0)  # [D]
    head = model.ast.head
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(head.out_features, head.in_features, generator=gen)  # [C, D]
    spread = ((feats - mean) @ weight.T).std()
    weight *= HEAD_LOGIT_STD / float(spread)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ mean))


def build_model(config: str, seed: int = 0, calib_clips: int = 8) -> tuple[torch.nn.Module, object]:
    """Random-weight ScoringModel (eval) with a sharpened head, and its WeightsFile."""
    from models import weights as mw
    from models.config import AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, get_config, window_samples

    torch.manual_seed(seed)
    cfg, fbank = get_config(config), FbankConfig()
    labels = [f"class_{i:03d}" for i in range(cfg.num_classes)]
    from models import AST

    ast = AST(cfg)
    wf = mw.WeightsFile(format=WEIGHTS_FORMAT, model_config=cfg, fbank_config=fbank, labels=labels,
                        norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD, state_dict=ast.state_dict(),
                        train={"note": "random weights for speed benchmarking; head sharpened"})
    model = mw.build_scoring_model(wf).eval()
    calib = music_clips(calib_clips, window_samples(fbank, cfg), seed=CALIBRATION_SEED)  # [N, S]
    sharpen_head(model, calib, seed)
    wf.state_dict = {k: v.detach().clone() for k, v in model.ast.state_dict().items()}
    return model, wf


def source_digest(*packages: str) -> str:
    """Hash of the given packages' sources: cached artifacts are rebuilt when an exporter changes."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def prepare(config: str, cache: Path, seed: int = 0) -> BenchModel:
    """Model + weights file in ``cache/<config>-s<seed>-<digest>/`` (reused when present, so cached
    artifacts always match the eager model); artifacts are added by :mod:`bench.exports`."""
    from models import weights as mw
    from models.config import window_samples

    folder = cache / f"{config}-s{seed}-{source_digest('models', 'ast_export')}"
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "modelo_audio.pth"
    if weights.exists():
        wf = mw.load_weights(weights)
        model = mw.build_scoring_model(wf).eval()
        log.info("%s: reusing %s", config, weights)
    else:
        model, wf = build_model(config, seed)
        mw.save_weights(weights, wf)
    ws = window_samples(wf.fbank_config, wf.model_config)
    return BenchModel(config=config, model=model, ast_cfg=wf.model_config, weights=weights, window_samples=ws)
