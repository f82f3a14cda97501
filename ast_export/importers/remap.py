"""Convert community AST checkpoints into our weights file (``ast-export import``, issue 7).

Two sources, one pure remapping function each (timm's ``checkpoint_filter_fn`` habit):

* **Hugging Face** (``transformers`` ``ASTForAudioClassification`` directory: ``config.json`` +
  ``model.safetensors`` or ``pytorch_model.bin``): :func:`hf_checkpoint_filter_fn`. Separate
  ``query``/``key``/``value`` projections are fused into timm's ``attn.qkv`` (rows ``[q; k; v]``, heads
  contiguous inside each, which is how timm's ``Attention`` splits them). Both the on-disk names
  (``encoder.layer.N.attention.attention.query``) and transformers 5's in-memory names
  (``layers.N.attention.q_proj``) are accepted. The config comes from ``config.json``; ``layer_norm_eps``
  (1e-12 on the hub) is kept. The norm stats come from ``preprocessor_config.json`` when present
  (``do_normalize: false`` becomes mean 0, std 0.5, i.e. the identity), else the AudioSet defaults.
* **Official AST** (YuanGongND/ast ``.pth``: ``module.`` DataParallel prefix, timm-0.4.5 ``v.*`` keys, fused
  ``qkv``, ``mlp_head.0/1``): :func:`ast_checkpoint_filter_fn`. The architecture is read off the tensor
  shapes (width, depth, heads = width / 64, MLP ratio, patch size, tokens, classes). Strides and frame count
  are not recoverable from shapes alone; they default to the official AudioSet recipe (stride 10, 1024
  frames, 128 mels) and can be overridden. DeiT's leftover ImageNet heads (``v.head``, ``v.head_dist``) are
  dropped. ``layer_norm_eps`` is timm's 1e-6; ``head_norm_eps`` is 1e-5, the torch default that the official
  ``mlp_head`` LayerNorm keeps.

When the requested frame count gives another patch grid than the checkpoint's, the position embedding is
resampled (``models.resize_pos_embed``, i.e. timm's ``resample_abs_pos_embed``).

Labels: HF ``id2label``; official checkpoints get AudioSet indices ``"0".."526"`` unless a label CSV in
AudioSet's ``class_labels_indices.csv`` format (``index,mid,display_name``) is given. Duplicate names get
``" [index]"`` appended, because our weights file requires unique labels.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ast_export.errors import CheckpointImportError
from ast_export.importers.files import (
    hf_norm_stats,
    read_hf_tensors,
    read_json,
    read_label_csv,
    torch_load_dict,
    unique_labels,
)
from models import (
    AST,
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    WEIGHTS_FORMAT,
    ASTConfig,
    FbankConfig,
    WeightsFile,
    resize_pos_embed,
)
from models.hub import file_sha256

logger = logging.getLogger(__name__)

HF_PREFIX = "audio_spectrogram_transformer."
HF_DEFAULT_EPS = 1e-12
HF_ACTIVATION = "gelu"  # exact (erf) GELU, which is what timm's Block uses

OFFICIAL_EPS = 1e-6  # timm 0.4.5 ViT/DeiT LayerNorm
OFFICIAL_HEAD_EPS = 1e-5  # mlp_head = Sequential(nn.LayerNorm(dim), nn.Linear): torch's default eps
OFFICIAL_STRIDE = 10
OFFICIAL_FRAMES = 1024
OFFICIAL_MELS = 128
HEAD_DIM = 64  # DeiT tiny/small/base all use 64-dim heads
OFFICIAL_DROPPED_PREFIXES = ("head.", "head_dist.", "pre_logits.")  # DeiT's ImageNet heads

TOKEN_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
}
HF_MODULE_RENAMES = {
    "layernorm": "norm",
    "classifier.layernorm": "head_norm",
    "classifier.dense": "head",
}
HF_BLOCK_RENAMES = {
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
HF_QKV_INDEX = {"query": 0, "key": 1, "value": 2, "q_proj": 0, "k_proj": 1, "v_proj": 2}
HF_BLOCK_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
HF_QKV_SUFFIX = re.compile(r"^attention\.(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)$")


@dataclass(frozen=True)
class ImportOptions:
    """User choices for ``ast-export import`` (``None`` = take it from the checkpoint / recipe)."""

    labels_csv: Path | None = None
    fstride: int | None = None  # official only: the checkpoint's patch strides
    tstride: int | None = None
    target_frames: int | None = None  # frames of the imported model (pos_embed resampled if the grid changes)
    source_sha256: str | None = None  # recorded (and checked by the caller) for provenance


# ---------------------------------------------------------------------------------------------------------
# Pure key remapping
# ---------------------------------------------------------------------------------------------------------


def hf_checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], cfg: ASTConfig) -> dict[str, torch.Tensor]:
    """Map a transformers AST state dict onto our ``AST`` parameter names (pure: inputs are not modified).

    Raises:
        CheckpointImportError: unknown keys, or a block whose q/k/v projections are incomplete.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], list[torch.Tensor | None]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        name = key[len(HF_PREFIX):] if key.startswith(HF_PREFIX) else key
        if name in TOKEN_RENAMES:
            out[TOKEN_RENAMES[name]] = value
            continue
        module, _, param = name.rpartition(".")
        if module in HF_MODULE_RENAMES:
            out[f"{HF_MODULE_RENAMES[module]}.{param}"] = value
            continue
        match = HF_BLOCK_KEY.match(name)
        if match is None:
            unknown.append(key)
            continue
        index, suffix, param = int(match.group(1)), match.group(2), match.group(3)
        if (qkv_match := HF_QKV_SUFFIX.match(suffix)) is not None:
            qkv.setdefault((index, param), [None, None, None])[HF_QKV_INDEX[qkv_match.group(1)]] = value
        elif suffix in HF_BLOCK_RENAMES:
            out[f"blocks.{index}.{HF_BLOCK_RENAMES[suffix]}.{param}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointImportError(f"unexpected Hugging Face AST keys: {', '.join(unknown[:5])}")
    for (index, param), parts in sorted(qkv.items()):
        if any(part is None for part in parts):
            raise CheckpointImportError(f"layer {index}: query/key/value {param} incomplete")
        out[f"blocks.{index}.attn.qkv.{param}"] = torch.cat(parts, dim=0)  # [3D, D] or [3D]
    depth = len({k.split(".")[1] for k in out if k.startswith("blocks.")})
    if depth != cfg.depth:
        raise CheckpointImportError(f"checkpoint has {depth} layers but config.json says {cfg.depth}")
    return out


def ast_checkpoint_filter_fn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official AST (YuanGongND/ast) state dict onto our ``AST`` names (pure).

    ``module.`` is stripped, ``v.`` (the timm DeiT) is unwrapped, DeiT's ImageNet heads are dropped and
    ``mlp_head.0``/``mlp_head.1`` become ``head_norm``/``head``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key.removeprefix("module.")
        if name.startswith("v."):
            name = name[2:]
            if name.startswith(OFFICIAL_DROPPED_PREFIXES):
                continue
        elif name.startswith("mlp_head.0."):
            name = "head_norm." + name.removeprefix("mlp_head.0.")
        elif name.startswith("mlp_head.1."):
            name = "head." + name.removeprefix("mlp_head.1.")
        else:
            raise CheckpointImportError(f"unexpected official AST key {key!r} (expected module.v.* / mlp_head.*)")
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------


def hf_config_to_ast(config: dict[str, Any], num_classes: int) -> ASTConfig:
    """Our ``ASTConfig`` from a transformers AST ``config.json`` dict."""
    act = config.get("hidden_act", HF_ACTIVATION)
    if act != HF_ACTIVATION:
        raise CheckpointImportError(f"hidden_act {act!r} is not supported (only {HF_ACTIVATION!r})")
    dim, hidden = int(config["hidden_size"]), int(config["intermediate_size"])
    mlp_ratio = hidden / dim
    if int(dim * mlp_ratio) != hidden:
        raise CheckpointImportError(f"intermediate_size {hidden} is not expressible as a ratio of {dim}")
    return ASTConfig(
        embed_dim=dim,
        depth=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        mlp_ratio=mlp_ratio,
        patch_size=int(config.get("patch_size", 16)),
        fstride=int(config.get("frequency_stride", OFFICIAL_STRIDE)),
        tstride=int(config.get("time_stride", OFFICIAL_STRIDE)),
        num_mel_bins=int(config.get("num_mel_bins", OFFICIAL_MELS)),
        target_frames=int(config.get("max_length", OFFICIAL_FRAMES)),
        num_classes=num_classes,
        dist_token=True,
        qkv_bias=bool(config.get("qkv_bias", True)),
        layer_norm_eps=float(config.get("layer_norm_eps", HF_DEFAULT_EPS)),
    )


def infer_official_config(state: dict[str, torch.Tensor], fstride: int, tstride: int) -> ASTConfig:
    """The checkpoint's own ``ASTConfig``, read off an :func:`ast_checkpoint_filter_fn` state dict."""
    try:
        dim = state["cls_token"].shape[-1]
        patch = state["patch_embed.proj.weight"].shape[-1]
        hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
        pos_rows, num_classes = state["pos_embed"].shape[1], state["head.weight"].shape[0]
    except KeyError as exc:
        raise CheckpointImportError(f"not an official AST checkpoint: missing {exc.args[0]!r}") from exc
    if dim % HEAD_DIM:
        raise CheckpointImportError(f"embed dim {dim} is not a multiple of the {HEAD_DIM}-dim DeiT heads")
    prefix = 2 if "dist_token" in state else 1
    freq = (OFFICIAL_MELS - patch) // fstride + 1
    patches = pos_rows - prefix
    if patches % freq:
        raise CheckpointImportError(
            f"pos_embed holds {patches} patches, not a multiple of the {freq} frequency rows of fstride "
            f"{fstride}; pass the checkpoint's --fstride/--tstride"
        )
    time = patches // freq
    official_time = (OFFICIAL_FRAMES - patch) // tstride + 1
    frames = OFFICIAL_FRAMES if time == official_time else (time - 1) * tstride + patch
    return ASTConfig(
        embed_dim=dim,
        depth=len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
        num_heads=dim // HEAD_DIM,
        mlp_ratio=hidden / dim,
        patch_size=patch,
        fstride=fstride,
        tstride=tstride,
        num_mel_bins=OFFICIAL_MELS,
        target_frames=frames,
        num_classes=num_classes,
        dist_token=prefix == 2,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        layer_norm_eps=OFFICIAL_EPS,
        head_norm_eps=OFFICIAL_HEAD_EPS,
    )


def retarget(state: dict[str, torch.Tensor], src: ASTConfig, target_frames: int | None
             ) -> tuple[dict[str, torch.Tensor], ASTConfig]:
    """Change the frame count; resample ``pos_embed`` when the patch grid changes (pure)."""
    if target_frames is None or target_frames == src.target_frames:
        return state, src
    cfg = dataclasses.replace(src, target_frames=int(target_frames))
    if min(cfg.grid) < 1:
        raise CheckpointImportError(f"--target-frames {target_frames} is shorter than one patch")
    if cfg.grid == src.grid:
        return state, cfg
    logger.info("resampling pos_embed from grid %s to %s", src.grid, cfg.grid)
    out = dict(state)
    out["pos_embed"] = resize_pos_embed(state["pos_embed"], src.grid, cfg.grid, src.num_prefix_tokens)
    return out, cfg


# ---------------------------------------------------------------------------------------------------------
# Whole imports
# ---------------------------------------------------------------------------------------------------------


def import_hf(folder: str | Path, options: ImportOptions | None = None) -> WeightsFile:
    """A :class:`WeightsFile` from a transformers AST checkpoint folder."""
    options = options or ImportOptions()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointImportError(f"{folder}: not a Hugging Face checkpoint folder (no config.json)")
    config = read_json(folder / "config.json")
    raw, weights_file = read_hf_tensors(folder)
    if "classifier.dense.weight" not in raw:
        raise CheckpointImportError(f"{folder}: no classifier head (an ASTModel, not ASTForAudioClassification)")
    num_classes = raw["classifier.dense.weight"].shape[0]
    id2label = config.get("id2label") or {}
    default = [str(id2label.get(str(i), i)) for i in range(num_classes)]
    cfg = hf_config_to_ast(config, num_classes)
    state = hf_checkpoint_filter_fn(raw, cfg)
    mean, std = hf_norm_stats(folder)
    source = {"format": "hf", "path": str(folder), "file": weights_file.name, "sha256": file_sha256(weights_file)}
    return _finish(state, cfg, _labels_for(num_classes, options, default), (mean, std), source, options)


def import_official(path: str | Path, options: ImportOptions | None = None) -> WeightsFile:
    """A :class:`WeightsFile` from an official AST ``.pth`` (YuanGongND/ast)."""
    options = options or ImportOptions()
    path = Path(path)
    data = torch_load_dict(path)
    for wrapper in ("state_dict", "model"):  # tolerate {"state_dict": {...}} training checkpoints
        if isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    state = ast_checkpoint_filter_fn(data)
    cfg = infer_official_config(state, options.fstride or OFFICIAL_STRIDE, options.tstride or OFFICIAL_STRIDE)
    default = [str(i) for i in range(cfg.num_classes)]
    source = {"format": "ast", "path": str(path), "file": path.name, "sha256": file_sha256(path)}
    return _finish(state, cfg, _labels_for(cfg.num_classes, options, default), (AUDIOSET_MEAN, AUDIOSET_STD),
                   source, options)


def _labels_for(num_classes: int, options: ImportOptions, default: list[str]) -> list[str]:
    labels = read_label_csv(options.labels_csv) if options.labels_csv else default
    if len(labels) != num_classes:
        raise CheckpointImportError(f"{len(labels)} labels for a {num_classes}-class head")
    return unique_labels([str(label) for label in labels])


def _finish(state: dict[str, torch.Tensor], cfg: ASTConfig, labels: list[str], norm: tuple[float, float],
            source: dict[str, Any], options: ImportOptions) -> WeightsFile:
    """Retarget the grid, prove the state dict fits our AST (strict load), and wrap it up."""
    state, cfg = retarget(state, cfg, options.target_frames)
    model = AST(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointImportError(f"converted weights do not fit {cfg}: {' '.join(str(exc).split())[:300]}") from exc
    if options.source_sha256:
        source["expected_sha256"] = options.source_sha256
    train = {"imported_from": source, "torch": str(torch.__version__)}
    logger.info("imported %s AST: dim %d, depth %d, heads %d, grid %s, %d frames, %d classes, eps %g (head %g), "
                "norm %.4f/%.4f", source["format"], cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.grid,
                cfg.target_frames, cfg.num_classes, cfg.layer_norm_eps, cfg.head_eps, norm[0], norm[1])
    return WeightsFile(format=WEIGHTS_FORMAT, model_config=cfg, fbank_config=FbankConfig(num_mel_bins=cfg.num_mel_bins), labels=labels,
                       norm_mean=norm[0], norm_std=norm[1],
                       state_dict={k: v.detach().float().contiguous() for k, v in model.state_dict().items()},
                       train=train)
