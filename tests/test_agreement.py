"""One contract, three sides: training's song scores, ``ast-export verify``'s held-out scoring and
``ast-serve identify`` give the same top-1 and the same scores on the same files.

The files include a float WAV whose samples leave [-1, 1] and hold a NaN, a 44.1 kHz stereo FLAC, a file
shorter than one window and one whose length is not a multiple of the hop: decoding (``serving.contract``'s
repair and clip rule), window placement, the default hop and the max-over-windows score must all agree for
the numbers to match. Tolerance: the fp32 ONNX Runtime bar (``tests/tolerances.py``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ast_export.heldout import load_songs
from ast_export.runners import onnx_runners
from models import build_scoring_model, load_weights
from serving.contract import default_hop, load_audio, song_scores
from serving.identify import IdentifyOptions, identify
from serving.matches import MatchOptions
from serving.session import ModelSession, SessionOptions
from tests.export.conftest import LABELS, random_weights
from tests.tolerances import ORT_PROBS_MAX_ABS
from training.metrics import SongSet, score_songs

RATE = 16000


def _music(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(110, 1760, size=4))
    return (0.3 * tones / 4 + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _songs(folder: Path) -> list[Path]:
    hot = _music(9.3, RATE, 1) * 4.0  # peaks far beyond full scale: clipped by the contract's rule
    hot[1234] = np.nan  # repaired to 0 with a warning
    stereo = np.stack([_music(7.0, 44100, 2), _music(7.0, 44100, 3)], axis=1)
    files = {"hot.wav": (hot, RATE, "FLOAT"), "stereo.flac": (stereo, 44100, "PCM_16"),
             "short.wav": (_music(1.1, RATE, 4), RATE, "PCM_16"), "odd.flac": (_music(13.37, RATE, 5), RATE, None)}
    paths = []
    for name, (data, rate, subtype) in files.items():
        paths.append(folder / name)
        sf.write(paths[-1], data, rate, subtype=subtype)
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Path]]:
    folder = tmp_path_factory.mktemp("agreement")
    weights = random_weights(folder / "modelo_audio.pth", global_pool="token")
    onnx_path = folder / "modelo_audio.onnx"
    export = [Path(sys.executable).with_name("ast-export"), "-q", "onnx", "--weights", str(weights), "--out",
              str(onnx_path), "--no-verify"]
    subprocess.run(export, check=True, capture_output=True, timeout=600)
    return weights, onnx_path, _songs(folder)


def test_training_export_and_serving_score_songs_alike(setup: tuple[Path, Path, list[Path]]) -> None:
    weights, onnx_path, paths = setup
    model = build_scoring_model(load_weights(weights))
    window = int(model.window_samples)
    hop = default_hop(window)

    waves = [load_audio(p, RATE) for p in paths]
    train = score_songs(model, SongSet(waves, [0] * len(waves)), window, hop, 7, torch.device("cpu"))  # [N, C]

    runner = onnx_runners(onnx_path)[0][0]
    held = load_songs([(p, None) for p in paths], RATE, window, hop)
    export = np.stack([song_scores(runner(song.windows)["probs"]) for song in held])  # [N, C]

    session = ModelSession(onnx_path, SessionOptions(device="cpu"))
    opts = IdentifyOptions(batch_size=5, match=MatchOptions(top_k=len(LABELS)))
    results = list(identify(session, [str(p) for p in paths], opts))
    assert [r.error for r in results] == [None] * len(paths)
    serve = np.stack([[{m.sample: m.score for m in r.matches}[label] for label in LABELS] for r in results])

    assert train.shape == export.shape == serve.shape == (len(paths), len(LABELS))
    np.testing.assert_allclose(export, train, atol=ORT_PROBS_MAX_ABS, rtol=0)
    np.testing.assert_allclose(serve, train, atol=ORT_PROBS_MAX_ABS, rtol=0)
    assert train.argmax(1).tolist() == export.argmax(1).tolist() == serve.argmax(1).tolist()
    assert [r.matches[0].sample for r in results] == [LABELS[i] for i in train.argmax(1)]
    assert results[0].duration_s == pytest.approx(9.3, abs=1e-3)
