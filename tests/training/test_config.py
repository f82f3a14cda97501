"""training.config: the dataclass round trip (nested augment, legacy names), presets, and config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import PRESETS, TrainConfig, load_config_file, make_config, peak_lr
from training.data.augment import AugmentConfig
from training.errors import ConfigError


def test_round_trip_keeps_the_nested_augment() -> None:
    cfg = make_config("small", augment={"record_prob": 0.25, "snr_db": (-3.0, 6.0)}, betas=(0.8, 0.9))
    data = cfg.to_dict()
    assert data["augment"]["snr_db"] == [-3.0, 6.0] and data["betas"] == [0.8, 0.9]
    assert json.loads(json.dumps(data)) == data  # plain types only
    assert TrainConfig.from_dict(data) == cfg
    assert cfg.augment == AugmentConfig(record_prob=0.25, snr_db=(-3.0, 6.0))


def test_from_dict_reads_old_files() -> None:
    """Older checkpoints and weights files: "variant", "hop_fraction", no "augment"."""
    old = {"variant": "small", "epochs": 3, "hop_fraction": 0.5}
    cfg = TrainConfig.from_dict(old)
    assert cfg.preset == "small" and cfg.epochs == 3 and cfg.augment == AugmentConfig()


def test_presets_and_unknown_names() -> None:
    assert {make_config(name).preset for name in PRESETS} == set(PRESETS)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        make_config("tiny", batchsize=4)
    with pytest.raises(ConfigError, match="did you mean 'record_prob'"):
        make_config("tiny", augment={"record_prb": 0.1})


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("lr", 0.0), ("ema_decay", 1.0), ("workers", -1),
                                              ("device", "tpu")])
def test_values_no_run_can_use_are_refused(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        make_config("tiny", **{field: value})


def test_json_and_toml_files(tmp_path: Path) -> None:
    as_json = tmp_path / "run.json"
    as_json.write_text(json.dumps({"preset": "small", "epochs": 3, "betas": [0.8, 0.95],
                                   "augment": {"record_prob": 0.2, "snr_db": [-2, 8]}}))
    as_toml = tmp_path / "run.toml"
    as_toml.write_text('preset = "small"\nepochs = 3\nbetas = [0.8, 0.95]\n\n'
                       "[augment]\nrecord_prob = 0.2\nsnr_db = [-2, 8]\n")
    for path in (as_json, as_toml):
        data = load_config_file(path)
        assert data == {"preset": "small", "epochs": 3, "betas": (0.8, 0.95),
                        "augment": {"record_prob": 0.2, "snr_db": (-2, 8)}}
        cfg = make_config(data.pop("preset"), **data)
        assert cfg.epochs == 3 and cfg.augment.record_prob == 0.2 and cfg.augment.snr_db == (-2, 8)
        assert cfg.lr == PRESETS["small"]["lr"]  # the file's preset under its values


@pytest.mark.parametrize(("text", "needle"), [
    ('{"epoch": 3}', "unknown config key 'epoch'; did you mean 'epochs'?"),
    ('{"augment": {"vinyl": 0.1}}', "unknown config key 'augment.vinyl'; did you mean 'augment.vinyl_prob'?"),
    ('{"epochs": "3"}', "config key 'epochs' must be like 24, got '3'"),
    ('{"epochs": 2.5}', "config key 'epochs' must be like 24"),
    ('{"augment": 1}', "'augment' must be a table"),
    ('{"preset": "huge"}', "unknown preset 'huge'"),
    ("[1, 2]", "must hold one object"),
    ("{nope", "is not valid JSON"),
])
def test_bad_files_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "run.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="cannot read --config-file"):
        load_config_file(tmp_path / "missing.json")


def test_peak_lr_is_the_objectives_unless_set() -> None:
    assert make_config().lr is None  # tiny sets none: each objective has its own
    assert peak_lr(make_config(), "classify") == 1e-3 and peak_lr(make_config(), "fingerprint") == 5e-4
    assert peak_lr(make_config(lr=2e-3), "fingerprint") == 2e-3  # --lr sets both
    assert peak_lr(make_config("small"), "fingerprint") == PRESETS["small"]["lr"]
