"""Shared fixtures for models tests: small thread budget, tiny configs, generated audio."""

from __future__ import annotations

import pytest
import torch

from models import AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, ScoringModel, get_config

# The test machine's cores are shared with other suites: stay at one intra-op thread.
torch.set_num_threads(1)

NUM_CLASSES = 5


@pytest.fixture(scope="session")
def tiny_scoring() -> ScoringModel:
    """Random-weight tiny ScoringModel in eval mode (seeded)."""
    torch.manual_seed(0)
    return ScoringModel(FbankConfig(), get_config("tiny", num_classes=NUM_CLASSES), AUDIOSET_MEAN, AUDIOSET_STD).eval()
