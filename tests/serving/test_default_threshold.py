"""The model's calibrated "no match" threshold (metadata ``threshold``) applies when --threshold is not given;
--threshold 0 turns it off; an explicit value wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from serving.cli import main
from serving.matches import default_threshold, effective_threshold
from tests.serving.fake_model import build_model, metadata


def _matches(model: Path, song: Path, *args: str) -> tuple[list[dict], str]:
    result = CliRunner().invoke(main, ["identify", "--model", str(model), "--format", "jsonl", *args, str(song)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["matches"], result.stderr


@pytest.fixture(scope="module")
def strict_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake model with a default threshold no fake score reaches (4 near-uniform classes)."""
    return build_model(tmp_path_factory.mktemp("strict") / "strict.onnx",
                       meta=metadata(threshold=0.99, threshold_far=0.01))


def test_the_models_threshold_is_the_default(strict_model: Path, tone: Path) -> None:
    found, log = _matches(strict_model, tone)
    assert found == []  # "no known sample"
    assert "no-match threshold 0.9900" in log and "1 % false-accept rate" in log


def test_threshold_zero_turns_it_off_and_a_value_wins(strict_model: Path, tone: Path) -> None:
    assert len(_matches(strict_model, tone, "--threshold", "0")[0]) == 1
    assert len(_matches(strict_model, tone, "--threshold", "0.01")[0]) == 1


def test_a_model_without_one_forces_no_threshold(fake_model: Path, tone: Path) -> None:
    found, log = _matches(fake_model, tone)
    assert len(found) == 1 and "no-match threshold" not in log


@pytest.mark.parametrize("meta, expected", [
    ({"threshold": 0.42}, 0.42), ({}, None), ({"threshold": True}, None), ({"threshold": 1.5}, None),
    ({"threshold": "0.4"}, None), ({"threshold": 0}, None),
])
def test_default_threshold_reads_only_a_valid_value(meta: dict, expected: float | None) -> None:
    assert default_threshold(meta) == expected


@pytest.mark.parametrize("given, model, expected", [
    (None, 0.3, 0.3), (None, None, None), (0.0, 0.3, None), (0.5, 0.3, 0.5), (0.5, None, 0.5),
])
def test_effective_threshold(given: float | None, model: float | None, expected: float | None) -> None:
    assert effective_threshold(given, model) == expected
