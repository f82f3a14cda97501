"""Random-weight models with a sharpened head, their weights file, and the exported artifacts (cached).

Random weights give near-uniform probabilities, so top-1 "agreement" would be decided by noise. The head is
therefore replaced by a random linear read-out of the *deviation* of each clip's head input from the mean
over calibration clips (bias = -W @ mean), restricted to the top ``HEAD_PCS`` principal directions of those
deviations, and scaled so the logits spread with std ``HEAD_LOGIT_STD`` across classes. A trained head also
reads the directions along which inputs differ (not the isotropic rest, where quantisation noise lives on a
par with signal), so top-1 then depends on what distinguishes one clip from another, and agreement measures
whether a variant preserves that. Calibration clips are disjoint from the bench clips. This is still a proxy:
a random encoder averages its tokens more than a trained one, so its clips differ less, and agreement under
int8/bf16 is, if anything, pessimistic.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench.speed.synth import music_clips

log = logging.getLogger(__name__)

HEAD_LOGIT_STD = 4.0
HEAD_PCS = 16  # principal directions of the calibration deviations the head reads
CALIB_CLIPS = {"base": 20}  # others: DEFAULT_CALIB_CLIPS
DEFAULT_CALIB_CLIPS = 32
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
    dev = feats - mean  # [N, D]
    _, _, vh = torch.linalg.svd(dev, full_matrices=False)  # vh [min(N, D), D]
    pcs = vh[: min(HEAD_PCS, len(feats) - 1)]  # [K, D]
    head = model.ast.head
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(head.out_features, len(pcs), generator=gen) @ pcs  # [C, D]
    spread = (dev @ weight.T).std()
    weight *= HEAD_LOGIT_STD / float(spread)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(-(weight @ mean))


def build_model(config: str, seed: int = 0) -> tuple[torch.nn.Module, object]:
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
    count = CALIB_CLIPS.get(config, DEFAULT_CALIB_CLIPS)
    calib = music_clips(count, window_samples(fbank, cfg), seed=CALIBRATION_SEED)  # [N, S]
    sharpen_head(model, calib, seed)
    wf.state_dict = {k: v.detach().clone() for k, v in model.ast.state_dict().items()}
    return model, wf


def source_digest(*packages: str) -> str:
    """Hash of the given packages' sources: cached artifacts are rebuilt when an exporter changes."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def prepare(config: str, cache: Path, seed: int = 0) -> BenchModel:
    """Model + weights file in ``cache/<config>-s<seed>-<digest>/`` (reused when present, so cached
    artifacts always match the eager model); artifacts are added by :mod:`bench.speed.exports`."""
    from models import weights as mw
    from models.config import window_samples

    folder = cache / f"{config}-s{seed}-{source_digest('models', 'ast_export')}"
    for stale in cache.glob(f"{config}-s{seed}-*"):  # built by older models/ast_export sources
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
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
