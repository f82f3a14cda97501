"""Weights file: round trip, atomic write, and refusal of truncated, foreign or code-carrying files."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models import (
    AST,
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    WEIGHTS_FORMAT,
    FbankConfig,
    WeightsError,
    WeightsFile,
    build_scoring_model,
    get_config,
    load_weights,
    save_weights,
    weights_sha256,
)
from tests.models.signals import music

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def weights() -> WeightsFile:
    torch.manual_seed(1)
    cfg = get_config("tiny", num_classes=NUM_CLASSES, depth=2)
    return WeightsFile(
        format=WEIGHTS_FORMAT, model_config=cfg, fbank_config=FbankConfig(),
        labels=[f"sample_{i}" for i in range(NUM_CLASSES)], norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD,
        state_dict=AST(cfg).state_dict(), train={"epochs": 3, "metrics": {"top1": 0.5}, "versions": ["a", None]},
    )


@pytest.fixture()
def saved(tmp_path: Path, weights: WeightsFile) -> Path:
    return save_weights(tmp_path / "modelo_audio.pth", weights)


def test_round_trip(saved: Path, weights: WeightsFile) -> None:
    loaded = load_weights(saved)
    assert loaded.model_config == weights.model_config and loaded.fbank_config == weights.fbank_config
    assert loaded.labels == weights.labels and loaded.train == weights.train
    assert (loaded.norm_mean, loaded.norm_std) == (weights.norm_mean, weights.norm_std)
    assert loaded.state_dict.keys() == weights.state_dict.keys()
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in weights.state_dict.items())
    model = build_scoring_model(loaded)
    assert not model.training
    wave = music(model.window_samples).float()[None]  # [1, S]
    with torch.no_grad():
        probs, _ = model(wave)
    assert probs.shape == (1, NUM_CLASSES)


def test_file_is_plain_data(saved: Path) -> None:
    data = torch.load(saved, weights_only=True)
    assert set(data) == {"format", "model_config", "fbank_config", "labels", "norm", "state_dict", "train"}
    assert data["format"] == "ast-sampleid/1" and data["norm"] == {"mean": AUDIOSET_MEAN, "std": AUDIOSET_STD}
    assert isinstance(data["model_config"], dict) and isinstance(data["fbank_config"], dict)


def test_atomic_write_leaves_no_temp_file(saved: Path, weights: WeightsFile) -> None:
    save_weights(saved, weights)  # overwrite in place
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_failed_write_keeps_old_file(saved: Path, weights: WeightsFile) -> None:
    before = saved.read_bytes()
    bad = dataclasses.replace(weights, train={"path": Path("/not/plain")})
    with pytest.raises(ValueError, match="plain Python"):
        save_weights(saved, bad)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


class _Level(enum.IntEnum):
    HIGH = 2


def test_str_and_number_subclasses_are_saved_as_plain_values(tmp_path: Path, weights: WeightsFile) -> None:
    """``torch.__version__`` is a ``TorchVersion`` (a str subclass) that weights_only loading refuses."""
    train = {"torch": torch.__version__, "loss": np.float64(0.25), "level": _Level.HIGH,
             "nested": [{torch.__version__: (np.float64(1.5),)}]}
    path = save_weights(tmp_path / "versions.pth", dataclasses.replace(weights, train=train))
    loaded = load_weights(path).train  # raised WeightsError ("refused ...") before the fix
    assert loaded == {"torch": str(torch.__version__), "loss": 0.25, "level": 2,
                      "nested": [{str(torch.__version__): (1.5,)}]}
    assert type(loaded["torch"]) is str and type(loaded["loss"]) is float and type(loaded["level"]) is int
    assert type(next(iter(loaded["nested"][0]))) is str


def test_non_plain_values_are_refused_with_their_place(weights: WeightsFile, tmp_path: Path) -> None:
    bad = dataclasses.replace(weights, train={"metrics": [{"top1": np.array([0.5])}]})
    with pytest.raises(ValueError, match=r"train\.metrics\[0\]\.top1 holds a ndarray; use plain Python"):
        save_weights(tmp_path / "bad.pth", bad)


def test_file_without_head_norm_eps_still_loads(saved: Path, tmp_path: Path) -> None:
    """Files written before ``head_norm_eps`` existed: the head norm uses ``layer_norm_eps``, as it did."""
    data = torch.load(saved, weights_only=True)
    del data["model_config"]["head_norm_eps"]
    old = tmp_path / "old.pth"
    torch.save(data, old)
    cfg = load_weights(old).model_config
    assert cfg.head_norm_eps is None and cfg.head_eps == cfg.layer_norm_eps
    assert build_scoring_model(load_weights(old)).ast.head_norm.eps == cfg.layer_norm_eps


def test_sha256(saved: Path) -> None:
    assert weights_sha256(saved) == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_truncated_file(saved: Path) -> None:
    cut = saved.with_name("cut.pth")
    cut.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(WeightsError) as info:
        load_weights(cut)
    assert str(info.value).startswith(f"{cut}: ") and "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="cannot read"):
        load_weights(tmp_path / "absent.pth")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="other/9"), "unknown format"),
        (lambda d: d.pop("labels"), "missing keys: labels"),
        (lambda d: d["model_config"].update(bogus=1), "unknown ASTConfig fields"),
        (lambda d: d.update(labels=["a"]), "labels but model_config.num_classes"),
        (lambda d: d.update(norm={"mean": 0.0, "std": 0.0}), "positive 'std'"),
        (lambda d: d.update(state_dict=[1, 2]), "state_dict must be a dict"),
    ],
)
def test_foreign_or_inconsistent_content(saved: Path, mutate, message: str) -> None:
    data = torch.load(saved, weights_only=True)
    mutate(data)
    torch.save(data, saved)
    with pytest.raises(WeightsError, match=message):
        load_weights(saved)


def test_state_dict_not_fitting_config(weights: WeightsFile) -> None:
    bigger = dataclasses.replace(weights, model_config=dataclasses.replace(weights.model_config, depth=3))
    with pytest.raises(WeightsError, match="does not fit"):
        build_scoring_model(bigger)


class _Payload:
    """Unpickling this runs code: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_code_executing_pickle_is_refused(saved: Path, tmp_path: Path) -> None:
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(proof)))  # the payload really runs code when unpickled unsafely
    assert proof.exists()

    marker = tmp_path / "marker"
    data = torch.load(saved, weights_only=True)
    data["train"] = {"note": _Payload(marker)}
    evil = tmp_path / "evil.pth"
    torch.save(data, evil)
    with pytest.raises(WeightsError, match="refused") as info:
        load_weights(evil)
    assert not marker.exists()
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
