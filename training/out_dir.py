"""Pre-flight checks of ``--out``: it can be written, and it has room for what the run will write.

A run rewrites ``checkpoint.pt`` after every epoch and writes ``modelo_audio.pth`` at the end. A checkpoint
holds up to five float32 copies of the AST's parameters (the model, AdamW's two moments, the best model so
far, the weight average); the weights file one. Checkpoints are rewritten atomically, so while one is written the previous one is
still on disk: a run into a folder without a checkpoint needs room for two, a run that replaces one
(``--resume``, or a re-run into the same folder) for one more. Both checks raise :class:`OutputDirError`,
which the CLI prints as one line (exit code 2) before any training step.

Space can still run out later (another process fills the disk). Writes during the run go through
:func:`writing`, which turns the OSError into :class:`OutputWriteError`: the CLI prints it as one line (exit
code 1). The atomic writes keep the previous checkpoint intact, so ``--resume`` continues once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from models import ASTConfig
from training.checkpoint import CHECKPOINT_NAME

logger = logging.getLogger(__name__)

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})  # "disk full" and "quota exceeded"
PARAM_COPIES_PER_CHECKPOINT = 5  # model, AdamW exp_avg and exp_avg_sq, best model so far, weight average
BYTES_PER_PARAM = 4  # float32
SLACK_BYTES = 1 << 20  # metrics.json, curves.png, the checkpoint's RNG states and history


class OutputDirError(OSError):
    """``--out`` cannot be created or written, or has too little free space."""


class OutputWriteError(RuntimeError):
    """A write into ``--out`` failed during the run (disk full, I/O error); earlier files are intact."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line :class:`OutputWriteError`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputWriteError(f"cannot write {path}: {reason}; the last complete checkpoint is kept "
                               "(make room, then run again with --resume)") from exc


def check_out_dir(out_dir: Path, rank: int = 0) -> None:
    """Create ``out_dir`` and prove it is writable with a probe file.

    Raises:
        OutputDirError: one-line reason (a full disk or quota says so rather than "not writable").
    """
    probe = Path(out_dir) / f".ast-train-probe-{rank}-{uuid.uuid4().hex}"
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):  # a full disk can fail the write after creating the file
            probe.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        if exc.errno in FULL_ERRNOS:
            raise OutputDirError(f"--out {out_dir} is full: {reason}") from exc
        raise OutputDirError(f"--out {out_dir} is not writable: {reason}") from exc


def ast_param_count(cfg: ASTConfig) -> int:
    """Parameters of ``models.AST(cfg)`` (timm ViT blocks), counted without building the model."""
    dim, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    patches = cfg.grid[0] * cfg.grid[1]
    qkv = 3 * dim * dim + (3 * dim if cfg.qkv_bias else 0)
    block = 2 * (2 * dim) + qkv + dim * dim + dim + dim * hidden + hidden + hidden * dim + dim
    tokens = cfg.num_prefix_tokens  # cls (+ dist)
    embed = dim * cfg.patch_size**2 + dim + tokens * dim + (tokens + patches) * dim  # conv, tokens, pos_embed
    head = 2 * (2 * dim) + dim * cfg.num_classes + cfg.num_classes  # norm, head_norm, head
    return embed + cfg.depth * block + head


def checkpoint_bytes(cfg: ASTConfig) -> int:
    """About the size of one ``checkpoint.pt`` of this model."""
    return PARAM_COPIES_PER_CHECKPOINT * BYTES_PER_PARAM * ast_param_count(cfg) + SLACK_BYTES


def bytes_needed(out_dir: Path, cfg: ASTConfig) -> int:
    """Free space the run needs in ``out_dir`` at its peak (see the module docstring)."""
    has_checkpoint = (Path(out_dir) / CHECKPOINT_NAME).is_file()
    return checkpoint_bytes(cfg) * (1 if has_checkpoint else 2)


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def check_free_space(out_dir: Path, cfg: ASTConfig) -> None:
    """Refuse to start when ``out_dir`` cannot hold the run's checkpoints.

    Raises:
        OutputDirError: one line with the free space, the need, and the size of a checkpoint.
    """
    try:
        free = shutil.disk_usage(out_dir).free
    except OSError as exc:  # no statvfs here: the probe write already passed, let the run try
        logger.debug("cannot read the free space of %s: %s", out_dir, exc)
        return
    need = bytes_needed(out_dir, cfg)
    if free < need:
        params = ast_param_count(cfg) / 1e6
        raise OutputDirError(f"--out {out_dir}: only {_size(free)} free, this run needs about {_size(need)} "
                             f"(a checkpoint of this {params:.1f}M-parameter model is about "
                             f"{_size(checkpoint_bytes(cfg))})")
