"""ScoringModel: output contract, pad-then-normalise order, batch independence, tracing."""

from __future__ import annotations

import pytest
import torch

from models import AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, ScoringModel, get_config, window_samples
from tests import tolerances as tol
from tests.models.signals import music, square


def windows(model: ScoringModel, batch: int = 3) -> torch.Tensor:
    rows = [music(model.window_samples, seed=s) for s in range(batch - 1)] + [square(model.window_samples)]
    return torch.stack(rows).float()  # [B, S]


def test_outputs(tiny_scoring: ScoringModel) -> None:
    assert tiny_scoring.window_samples == window_samples(FbankConfig(), tiny_scoring.ast.cfg) == 64240
    with torch.no_grad():
        probs, embedding = tiny_scoring(windows(tiny_scoring))
    assert probs.shape == (3, tiny_scoring.ast.cfg.num_classes) and embedding.shape == (3, 192)
    assert torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-6)
    assert (probs >= 0).all()
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_features_match_manual_pipeline(tiny_scoring: ScoringModel) -> None:
    wave = windows(tiny_scoring, batch=2)  # [2, S]
    with torch.no_grad():
        expected = (tiny_scoring.fbank(wave) - AUDIOSET_MEAN) / (2 * AUDIOSET_STD)  # [2, T, M]
        assert torch.equal(tiny_scoring.features(wave), expected)
        pooled = tiny_scoring.ast.forward_head(tiny_scoring.ast.forward_features(expected), pre_logits=True)  # [2, D]
        assert torch.allclose(tiny_scoring(wave)[1], torch.nn.functional.normalize(pooled, dim=-1))


def test_short_input_is_zero_padded_before_normalisation(tiny_scoring: ScoringModel) -> None:
    wave = music(16000).float()[None]  # [1, S], 98 frames < 400
    feats = tiny_scoring.features(wave)  # [1, T, M]
    assert feats.shape == (1, 400, 128)
    pad_value = -AUDIOSET_MEAN / (2 * AUDIOSET_STD)
    assert torch.allclose(feats[:, 98:], torch.full_like(feats[:, 98:], pad_value))
    long = music(2 * tiny_scoring.window_samples).float()[None]  # [1, 2S] -> cropped to the first frames
    assert torch.allclose(tiny_scoring.features(long)[:, :10], tiny_scoring.features(long[:, :20000])[:, :10],
                          atol=1e-5)


def test_batch_independence(tiny_scoring: ScoringModel) -> None:
    wave = windows(tiny_scoring)  # [3, S]
    with torch.no_grad():
        probs, embedding = tiny_scoring(wave)
        probs_1, embedding_1 = tiny_scoring(wave[1:2])
    assert torch.allclose(probs[1:2], probs_1, atol=1e-6)
    assert torch.allclose(embedding[1:2], embedding_1, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_trace_matches_eager(tiny_scoring: ScoringModel) -> None:
    wave = windows(tiny_scoring, batch=2)  # [2, S]
    tiny_scoring.ast.set_fused_attn(False)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(tiny_scoring, (wave,))
            other = windows(tiny_scoring, batch=4).flip(0)  # another batch size and content
            probs, embedding = traced(other)
            ref_probs, ref_embedding = tiny_scoring(other)
    finally:
        tiny_scoring.ast.set_fused_attn(True)
    assert (probs - ref_probs).abs().max() <= tol.TS_PROBS_MAX_ABS
    assert torch.allclose(embedding, ref_embedding, atol=1e-6)


def test_config_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="num_mel_bins"):
        ScoringModel(FbankConfig(num_mel_bins=64), get_config("tiny"), AUDIOSET_MEAN, AUDIOSET_STD)
    with pytest.raises(ValueError, match="norm_std"):
        ScoringModel(FbankConfig(), get_config("tiny"), AUDIOSET_MEAN, 0.0)
