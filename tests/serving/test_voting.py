"""serving.voting: the pieces of time-consistent voting, against plain references."""

from __future__ import annotations

import numpy as np
import pytest

from serving.voting import Occurrence, _shared, by_record


@pytest.mark.parametrize("seed", range(5))
def test_shared_is_the_fraction_held_by_the_other(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = (np.unique(rng.integers(0, 60, rng.integers(1, 30))) for _ in range(2))
    assert _shared(a, b) == pytest.approx(np.isin(a, b).mean())
    assert _shared(np.arange(5), np.arange(10, 20)) == 0.0


def test_records_rank_by_their_best_occurrence_then_by_the_sum() -> None:
    """One long agreeing run beats many short scattered ones whose votes add up to more."""
    scattered = [Occurrence(1, 0, float(i), np.arange(10 * i, 10 * i + 4)) for i in range(4)]  # 4 x 4 votes
    long_run = [Occurrence(0, 0, 2.0, np.arange(50, 60))]  # 10 votes
    tie = [Occurrence(2, 0, 1.0, np.arange(0, 10)), Occurrence(2, 0, 9.0, np.arange(20, 24))]  # 10, then 4 more
    found = sorted(scattered + long_run + tie, key=lambda o: -o.votes)
    ranked = by_record(found, 3)
    assert [r.record for r in ranked] == [2, 0, 1]
    assert [(r.votes, r.total) for r in ranked] == [(10, 14), (10, 10), (4, 16)]
