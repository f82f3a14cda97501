"""Random-weight transformers AST models and their references, for the import parity tests (no downloads)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from click.testing import CliRunner
from transformers import ASTConfig as HFASTConfig
from transformers import ASTFeatureExtractor, ASTForAudioClassification

from ast_export.cli import main as export_main
from models import AUDIOSET_MEAN, AUDIOSET_STD

SAMPLE_RATE = 16000
SMALL = {"hidden_size": 192, "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 768,
         "max_length": 256, "num_mel_bins": 128}
BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_length": 1024, "num_mel_bins": 128}
LABELS = ["kick drum", "snare, rimshot", "hi-hat", "vinyl crackle", "horn stab"]
LAYERNORM_SPREAD = 0.2  # LayerNorm weights 1 + N(0, 0.2): the eps and affine terms matter
WEIGHT_STD = 0.05
HEAD_STD = 0.5  # a wide classifier so the softmax is far from uniform and differences show


def build_hf_model(size: dict[str, int], seed: int = 0) -> ASTForAudioClassification:
    """An ``ASTForAudioClassification`` with seeded random weights (every parameter perturbed)."""
    torch.manual_seed(seed)
    config = HFASTConfig(**size, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                         label2id={name: i for i, name in enumerate(LABELS)})
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                param.copy_(1.0 + LAYERNORM_SPREAD * torch.randn_like(param))
            elif name.startswith("classifier.dense"):
                param.normal_(0.0, HEAD_STD)
            else:
                param.normal_(0.0, WEIGHT_STD)
    return model


def save_hf(model: ASTForAudioClassification, folder: Path) -> Path:
    model.save_pretrained(str(folder))
    return folder


def waveforms(num_samples: int, seed: int = 1) -> np.ndarray:
    """Two zero-mean test waveforms ``[2, S]``: tones + noise, and noise bursts (the HF extractor does not
    remove the waveform mean; our graph does)."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    tones = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t)
    tones = tones + 0.02 * rng.standard_normal(num_samples)
    bursts = 0.4 * rng.standard_normal(num_samples) * (np.sin(2 * np.pi * 3 * t) > 0)
    batch = np.stack([tones, bursts]).astype(np.float32)
    return batch - batch.mean(axis=1, keepdims=True)


def hf_probs(model: ASTForAudioClassification, batch: np.ndarray, max_length: int,
             mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> np.ndarray:
    """transformers' reference: ``ASTFeatureExtractor`` features -> softmax(logits), ``[B, C]``."""
    extractor = ASTFeatureExtractor(max_length=max_length, sampling_rate=SAMPLE_RATE, do_normalize=True,
                                    mean=mean, std=std)
    feats = extractor(list(batch), sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_values"]
    with torch.no_grad():
        return model(feats).logits.softmax(dim=-1).numpy()


def cli(*args: str) -> str:
    """Run ``ast-export ARGS`` in-process; return stdout, failing with the output on a non-zero exit."""
    result = CliRunner().invoke(export_main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def ort_probs(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    probs, _ = session.run(None, {"waveform": batch})
    return probs


def to_official_state_dict(model: ASTForAudioClassification) -> dict[str, torch.Tensor]:
    """The HF model's weights in the YuanGongND/ast layout (DataParallel ``module.`` + timm-0.4.5 ``v.*``),
    written independently of ``ast_export.importers``. DeiT's ImageNet heads are added, as in real files."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    enc, dim = "audio_spectrogram_transformer.", model.config.hidden_size
    out = {
        "module.v.cls_token": sd[enc + "embeddings.cls_token"],
        "module.v.dist_token": sd[enc + "embeddings.distillation_token"],
        "module.v.pos_embed": sd[enc + "embeddings.position_embeddings"],
        "module.v.head.weight": torch.randn(1000, dim), "module.v.head.bias": torch.zeros(1000),
        "module.v.head_dist.weight": torch.randn(1000, dim), "module.v.head_dist.bias": torch.zeros(1000),
    }
    for p in ("weight", "bias"):
        out[f"module.v.patch_embed.proj.{p}"] = sd[f"{enc}embeddings.patch_embeddings.projection.{p}"]
        out[f"module.v.norm.{p}"] = sd[f"{enc}layernorm.{p}"]
        out[f"module.mlp_head.0.{p}"] = sd[f"classifier.layernorm.{p}"]
        out[f"module.mlp_head.1.{p}"] = sd[f"classifier.dense.{p}"]
        for i in range(model.config.num_hidden_layers):
            src, dst = f"{enc}layers.{i}.", f"module.v.blocks.{i}."
            qkv = [sd[f"{src}attention.{n}_proj.{p}"] for n in "qkv"]
            out[f"{dst}attn.qkv.{p}"] = torch.cat(qkv, dim=0)
            out[f"{dst}attn.proj.{p}"] = sd[f"{src}attention.o_proj.{p}"]
            out[f"{dst}norm1.{p}"] = sd[f"{src}layernorm_before.{p}"]
            out[f"{dst}norm2.{p}"] = sd[f"{src}layernorm_after.{p}"]
            out[f"{dst}mlp.fc1.{p}"] = sd[f"{src}mlp.fc1.{p}"]
            out[f"{dst}mlp.fc2.{p}"] = sd[f"{src}mlp.fc2.{p}"]
    return out


def write_label_csv(path: Path, names: list[str]) -> Path:
    """An AudioSet ``class_labels_indices.csv``-style file (quoted names with commas)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["index", "mid", "display_name"])
        for i, name in enumerate(names):
            writer.writerow([i, f"/m/{i:04x}", name])
    return path


def write_preprocessor(folder: Path, mean: float, std: float, max_length: int) -> None:
    config = {"feature_extractor_type": "ASTFeatureExtractor", "sampling_rate": SAMPLE_RATE, "mean": mean,
              "std": std, "do_normalize": True, "max_length": max_length, "num_mel_bins": 128,
              "feature_size": 1, "padding_value": 0.0, "return_attention_mask": False}
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
