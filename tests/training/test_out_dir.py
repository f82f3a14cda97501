"""``--out`` pre-flight checks: writable probe (full disk named as such), free space against the model size."""

from __future__ import annotations

import dataclasses
import errno
import os
from pathlib import Path

import pytest

from models import AST, ASTConfig, get_config
from tests.training.train_helpers import TINY_MODEL, fail_probe, fake_free
from training.checkpoint import CHECKPOINT_NAME
from training.out_dir import (
    OutputDirError,
    ast_param_count,
    bytes_needed,
    check_free_space,
    check_out_dir,
    checkpoint_bytes,
)

CONFIGS = {"tiny-test": get_config("tiny", num_classes=3, **TINY_MODEL),
           "tiny": get_config("tiny", num_classes=5),
           "small-no-dist-no-bias": dataclasses.replace(get_config("small", num_classes=7), dist_token=False,
                                                        qkv_bias=False, mlp_ratio=3.0)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_param_count_matches_the_model(name: str) -> None:
    cfg = CONFIGS[name]
    assert ast_param_count(cfg) == sum(v.numel() for v in AST(cfg).state_dict().values())


def test_a_fresh_run_needs_two_checkpoints_a_replacing_one_one(tmp_path: Path) -> None:
    cfg: ASTConfig = CONFIGS["tiny"]
    assert checkpoint_bytes(cfg) >= 16 * ast_param_count(cfg)  # model + 2 AdamW moments + best, float32
    assert bytes_needed(tmp_path, cfg) == 2 * checkpoint_bytes(cfg)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"x")
    assert bytes_needed(tmp_path, cfg) == checkpoint_bytes(cfg)


def test_too_little_free_space_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = CONFIGS["tiny"]
    fake_free(monkeypatch, 3_100_000)
    with pytest.raises(OutputDirError) as info:
        check_free_space(tmp_path, cfg)
    message = str(info.value)
    assert "\n" not in message and "only 3.1 MB free" in message and "1.9M-parameter" in message, message
    fake_free(monkeypatch, bytes_needed(tmp_path, cfg))
    check_free_space(tmp_path, cfg)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_probe_says_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    fail_probe(monkeypatch, err)
    with pytest.raises(OutputDirError, match=f"is full: {os.strerror(err)}"):
        check_out_dir(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_other_probe_errors_say_not_writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_probe(monkeypatch, errno.EROFS)
    with pytest.raises(OutputDirError, match="is not writable"):
        check_out_dir(tmp_path / "out")
