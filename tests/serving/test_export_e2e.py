"""End to end across packages: a random tiny model -> `ast-export onnx` -> `ast-serve identify`.

Written against the shared API (models.weights, ast_export CLI, serving.contract.song_windows). It checks that
serving reads a real export (metadata, shapes), that its streamed windows are the contract's, and that its song
scores follow the shared rule (max over windows) on the exported graph's own window probabilities.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from serving.cli import main
from serving.contract import load_audio, song_windows
from serving.identify import IdentifyOptions, identify
from serving.matches import MatchOptions
from serving.session import ModelSession, SessionOptions
from serving.windows import iter_windows
from tests.serving.conftest import write_tone

ROOT = Path(__file__).resolve().parents[2]
LABELS = ["rec_a", "rec_b", "rec_c"]
SONG_S = 9.3
TINY_DEPTH = 1
EXPORT_TIMEOUT_S = 600


def _random_weights(path: Path) -> Path:
    from models import AST
    from models import weights as model_weights
    from models.config import AUDIOSET_MEAN, AUDIOSET_STD, FbankConfig, get_config

    torch.manual_seed(0)
    cfg = get_config("tiny", num_classes=len(LABELS), depth=TINY_DEPTH)
    wf = model_weights.WeightsFile(format="ast-sampleid/1", model_config=cfg, fbank_config=FbankConfig(), labels=LABELS,
                     norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD, state_dict=AST(cfg).state_dict(), train={})
    model_weights.save_weights(path, wf)
    return path


def _export(weights: Path, out: Path) -> Path:
    cmd = [sys.executable, "-c", "from ast_export.cli import main; main()", "onnx", "--weights", str(weights),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_export_then_identify(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    from models import weights as model_weights

    weights = _random_weights(tmp_path / "modelo_audio.pth")
    model = _export(weights, tmp_path / "modelo_audio.onnx")
    session = ModelSession(model, SessionOptions(device="cpu", intra_threads=1))
    meta = session.metadata
    assert list(meta.labels) == LABELS and meta.raw["weights_sha256"] == model_weights.weights_sha256(weights)

    song = write_tone(tmp_path / "song.flac", SONG_S, rate=44100, channels=2)
    wave = load_audio(song, meta.sample_rate)
    ours = np.concatenate([w for _, w in iter_windows([wave], meta.window_samples, meta.hop_samples)])
    np.testing.assert_array_equal(ours, song_windows(wave, meta.window_samples, meta.hop_samples))

    probs, emb = session.run(ours)  # [N, C], [N, D]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    opts = IdentifyOptions(match=MatchOptions(top_k=len(LABELS)), prefetch=False)
    result = next(identify(session, [str(song)], opts))
    assert result.error is None and result.duration_s == round(wave.shape[0] / meta.sample_rate, 3)
    assert [m.sample for m in result.matches][0] == LABELS[int(probs.max(axis=0).argmax())]
    np.testing.assert_allclose([m.score for m in result.matches], np.sort(probs.max(axis=0))[::-1], rtol=1e-6)

    code = 0
    try:
        main(["identify", "--model", str(model), "--format", "json", str(song)], standalone_mode=False)
    except SystemExit as stop:  # identify ends with sys.exit(code)
        code = stop.code
    assert code in (0, None)
    assert json.loads(capsys.readouterr().out)[0]["matches"][0]["sample"] in LABELS
