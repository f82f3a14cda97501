"""serving.voting: the pieces of time-consistent voting, against plain references."""

from __future__ import annotations

import numpy as np
import pytest

from serving.voting import _shared


@pytest.mark.parametrize("seed", range(5))
def test_shared_is_the_fraction_held_by_the_other(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (np.unique(rng.integers(0, 60, rng.integers(1, 30))) for _ in range(2))
    assert _shared(a, b) == pytest.approx(np.isin(a, b).mean())
    assert _shared(np.arange(5), np.arange(10, 20)) == 0.0
