"""training.ema: the moving average's arithmetic, the swap in and out of the model, and its state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.ema import WeightEMA


def _model(value: float) -> nn.Linear:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def test_update_follows_the_warmed_up_decay() -> None:
    model = _model(0.0)
    ema = WeightEMA(model, decay=0.9)
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * value
        assert ema.shadow["weight"][0, 0].item() == pytest.approx(expected, rel=1e-6)
    assert ema.shadow["bias"].item() == pytest.approx(0.0)  # bias never moved


def test_applied_swaps_in_the_average_and_restores_the_model() -> None:
    model = _model(1.0)
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # decay min(0.5, 2/11): shadow = 1 + (3 - 1) * 9/11
    with ema.applied(model):
        assert model.weight[0, 0].item() == pytest.approx(1.0 + 2.0 * 9 / 11)
    assert model.weight[0, 0].item() == 3.0
    with pytest.raises(RuntimeError), ema.applied(model):
        raise RuntimeError("evaluation failed")
    assert model.weight[0, 0].item() == 3.0  # restored on errors too


def test_state_round_trip_and_bad_decay() -> None:
    model = _model(2.0)
    ema = WeightEMA(model, decay=0.99)
    ema.update(model)
    other = WeightEMA(_model(0.0), decay=0.99)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1
    torch.testing.assert_close(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match="decay"):
        WeightEMA(model, decay=1.0)
