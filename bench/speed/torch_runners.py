"""PyTorch runners: our eager model (fp32, bf16), TorchScript, torch.compile; GPU paths guarded."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from bench.speed.timing import Runner, Unavailable

log = logging.getLogger(__name__)


def _device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("unmeasured: no GPU")
    return torch.device(device)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _host(probs: torch.Tensor, emb: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return probs.float().cpu().numpy(), emb.float().cpu().numpy()


def eager(model: torch.nn.Module, device: str = "cpu") -> Runner:
    """Our ScoringModel in eager fp32: waveforms -> (probs, embedding) (frontend included)."""
    dev = _device(device)
    model = model.to(dev).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            return _host(*model(torch.from_numpy(x).to(dev)))  # [B, C], [B, D]

    return run


def bf16_encoder(model: torch.nn.Module, device: str = "cpu", cast_weights: bool = False) -> Runner:
    """fp32 frontend, bf16 encoder: autocast (default) or bf16 weights (``cast_weights``).

    The Kaldi frontend stays fp32 on purpose: its DFT / log on power spectra lose too much in bf16 (8-bit
    mantissa), and it is a small share of the FLOPs.
    """
    dev = _device(device)
    model = model.to(dev).eval()
    encoder = model.ast
    if cast_weights:
        import copy

        encoder = copy.deepcopy(model.ast).to(torch.bfloat16)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            feats = model.features(torch.from_numpy(x).to(dev))  # [B, T, M] fp32
            if cast_weights:
                pooled = encoder.pool(encoder.forward_features(feats.to(torch.bfloat16)))  # [B, D]
                logits = encoder.classify(pooled)  # [B, C]
            else:
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    pooled = encoder.pool(encoder.forward_features(feats))  # [B, D]
                    logits = encoder.classify(pooled)  # [B, C]
            probs = torch.softmax(logits.float(), dim=-1)  # [B, C]
            return _host(probs, torch.nn.functional.normalize(pooled.float(), dim=-1))

    return run


def bf16_autocast_all(model: torch.nn.Module, device: str = "cpu") -> Runner:
    """Whole graph under bf16 autocast, frontend included (an experiment: shows the frontend's sensitivity)."""
    dev = _device(device)
    model = model.to(dev).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            return _host(*model(torch.from_numpy(x).to(dev)))  # [B, C], [B, D]

    return run


def torchscript(path: Path | None, device: str = "cpu") -> Runner:
    """A TorchScript artifact written by ast_export."""
    dev = _device(device)
    if path is None or not Path(path).exists():
        raise Unavailable("failed: artifact not produced (see log)")
    module = torch.jit.load(str(path), map_location=dev).eval()

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out = module(torch.from_numpy(x).to(dev))
            if isinstance(out, dict):
                return _host(out["probs"], out["embedding"])
            return _host(out[0], out[1])

    return run


def compiled(model: torch.nn.Module, device: str = "cuda") -> Runner:
    """torch.compile (inductor) of the whole scoring model; GPU only in the default plan."""
    dev = _device(device)
    fn = torch.compile(model.to(dev).eval(), dynamic=False)

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            probs, emb = fn(torch.from_numpy(x).to(dev))  # [B, C], [B, D]
            _sync(dev)
            return _host(probs, emb)

    return run
