"""The fingerprint objective: pairs, NT-Xent, the schedule rules, and ``ast-train`` end to end with records."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from models import load_weights
from tests.training.train_helpers import SAMPLE_RATE, TINY_MODEL, tiny_request, write_manifest
from training import fingerprint as fp
from training.cli import main
from training.config import make_config
from training.data import pairs, synth
from training.data.manifest import load_manifest
from training.data.pairs import CatalogueAudio, PairMaker, load_catalogue
from training.errors import ConfigError
from training.train import run

RECORD_SECONDS = 4.0
WINDOW = 32240  # fp_frames 200 with the default fbank
FAST = {"model_overrides": dict(TINY_MODEL), "pairs": 4, "fp_check_every": 5, "fp_heldout": 8,
        "norm_windows": 8, "eval_batch_size": 8, "threads": 1, "device": "cpu"}


def write_catalogue(root: Path) -> Path:
    """``write_manifest``'s songs plus one music record per label; records.csv's sample_path names no file."""
    manifest = write_manifest(root)
    rng = np.random.default_rng(5)
    lines = ["sample,record_path,sample_path"]
    for i in range(3):
        wave = synth.music_clip(int(RECORD_SECONDS * SAMPLE_RATE), rng)
        sf.write(root / f"rec{i}.wav", wave.astype(np.float32), SAMPLE_RATE)
        lines.append(f"label{i},rec{i}.wav,missing/seg{i}.wav")
    (root / "records.csv").write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalogue(tmp_path_factory.mktemp("fpdata"))


def test_pairs_come_from_record_path_and_are_deterministic(catalogue: Path) -> None:
    audio = load_catalogue(load_manifest(catalogue))  # sample_path names missing files: it is never read
    assert audio.names == ["label0", "label1", "label2"] and audio.labels == [0, 1, 2]
    assert len(audio.waves[0]) == int(RECORD_SECONDS * SAMPLE_RATE)
    assert [len(s) for s in audio.songs] == [3, 3, 3]  # each label's train songs
    draws = [PairMaker(audio, WINDOW, np.random.default_rng(1)).batch(np.random.default_rng(2), 6)
             for _ in range(2)]
    anchors, positives, records = draws[0]
    assert anchors.shape == positives.shape == (6, WINDOW) and anchors.dtype == np.float32
    assert records.shape == (6,) and set(records.tolist()) <= {0, 1, 2}
    assert all(np.array_equal(a, b) for a, b in zip(draws[0], draws[1], strict=True))
    assert np.abs(positives).max() <= 1.0


def test_song_pairs_take_two_songs_spans() -> None:
    songs = []
    for level in (1000, 2000):
        wave = np.zeros(5 * SAMPLE_RATE, dtype=np.int16)
        wave[SAMPLE_RATE:3 * SAMPLE_RATE] = level  # the span
        songs.append((wave, SAMPLE_RATE, 3 * SAMPLE_RATE))
    audio = CatalogueAudio(["r"], [np.zeros(3 * SAMPLE_RATE, np.int16)], [0], [songs])
    maker = PairMaker(audio, 8000, np.random.default_rng(0), song_prob=1.0)
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b, r = maker.pair(rng)
        levels = {round(float(a.max()) * 32767), round(float(b.max()) * 32767)}
        assert r == 0 and levels == {1000, 2000}  # one window from each song, inside its span


def test_record_positives_get_the_second_eq_move(monkeypatch: pytest.MonkeyPatch) -> None:
    filtered: list[int] = []
    real = pairs.A.random_filter
    monkeypatch.setattr(pairs.A, "random_filter", lambda x, rng: filtered.append(len(x)) or real(x, rng))
    audio = CatalogueAudio(["r"], [synth.music_clip(3 * SAMPLE_RATE, np.random.default_rng(0))], [0], [])
    # the chain's own filter is off, so every call is the second EQ move
    quiet = dataclasses.replace(pairs.pair_augment(), filter_prob=0.0)
    for prob, expected in ((1.0, [8000] * 4), (0.0, [])):
        filtered.clear()
        monkeypatch.setattr(pairs, "EQ_STACK_PROB", prob)
        maker = PairMaker(audio, 8000, np.random.default_rng(0), song_prob=0.0, augment=quiet)
        rng = np.random.default_rng(1)
        for _ in range(4):
            maker.pair(rng)
        assert filtered == expected


def test_nt_xent_is_low_for_identical_views_and_log_2n_minus_1_for_random() -> None:
    torch.manual_seed(0)
    n = 64
    z = F.normalize(torch.randn(n, 128), dim=-1)
    same = fp.nt_xent(torch.cat([z, z]), tau=0.07)
    rand = fp.nt_xent(F.normalize(torch.randn(2 * n, 128), dim=-1), tau=1.0)
    assert float(same) < 0.1
    assert float(rand) == pytest.approx(math.log(2 * n - 1), rel=0.05)
    labels = torch.tensor([0, -1, 1, 1])
    loss = fp.fingerprint_loss(z[:8], torch.randn(8, 3), labels, 0.07, 0.5)
    assert torch.isfinite(loss) and float(loss) > float(fp.nt_xent(z[:8], 0.07))


def test_budget_rule_schedule_and_refusals() -> None:
    cfg = make_config("tiny")
    assert fp.budget_seconds(cfg, 4 * 60) == 5 * 60 and fp.budget_seconds(cfg, 1000 * 60) == 55 * 60
    assert fp.budget_seconds(cfg, 20 * 60) == pytest.approx(14 * 60)  # 0.7 min per minute of audio
    assert fp.budget_seconds(make_config("tiny", budget_minutes=0.5), 20 * 60) == 30
    assert fp.time_lr(1.0, 0, 0.0, 0.02) == pytest.approx(0.01)  # warm-up
    assert fp.time_lr(1.0, 500, 1.0, 0.02) == pytest.approx(0.02)  # the cosine ends at the floor
    with pytest.raises(ConfigError, match="one process"):
        fp.check_objective("fingerprint", 2, False)
    with pytest.raises(ConfigError, match="resume"):
        fp.check_objective("fingerprint", 1, True)
    assert not fp.use_bf16("off", torch.device("cpu")) and fp.use_bf16("bf16", torch.device("cpu"))


def test_cpu_bf16_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert fp.cpu_has_bf16(info)
    info.write_text("flags: fpu sse avx2\n")
    assert not fp.cpu_has_bf16(info) and not fp.cpu_has_bf16(tmp_path / "none")


def test_ast_train_trains_the_fingerprint_by_default_with_records(catalogue: Path, tmp_path: Path) -> None:
    from ast_export.source import load_source

    config = tmp_path / "fast.json"
    config.write_text(json.dumps(FAST))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["--manifest", str(catalogue), "--out", str(out), "--config-file", str(config),
                                       "--budget-minutes", "0.05", "--amp", "off", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["objective"] == "fingerprint"
    wf = load_weights(out / "modelo_audio.pth")
    assert (wf.model_config.fp_dim, wf.model_config.target_frames) == (128, 200)
    assert wf.labels == ["label0", "label1", "label2"] and wf.train["objective"] == "fingerprint"
    metrics = json.loads((out / "metrics.json").read_text())
    run_info = metrics["fingerprint"]
    assert run_info["steps"] > 0 and run_info["stop_reason"] in ("budget", "converged")
    assert run_info["bf16"] is False and run_info["heldout_curve"][0]["step"] == 5
    assert (out / "curves.png").is_file()
    source = load_source(out / "modelo_audio.pth")  # ast-export takes it as it is
    probs, embedding = source.model(torch.zeros(2, source.model.window_samples))
    assert probs.shape == (2, 3) and embedding.shape == (2, 128)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-4)


def test_two_good_checks_stop_the_run(catalogue: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp, "pair_accuracy", lambda *args, **kwargs: 1.0)  # an easy catalogue, as far as it shows
    metrics = run(tiny_request(catalogue, tmp_path, **{**FAST, "budget_minutes": 5.0, "amp": "off"}))
    info = metrics["fingerprint"]
    assert info["stop_reason"] == "converged" and info["steps"] == 10
    assert [c["heldout_acc"] for c in info["heldout_curve"]] == [1.0, 1.0]


def test_objective_classify_ignores_the_records_for_the_objective(catalogue: Path, tmp_path: Path) -> None:
    metrics = run(tiny_request(catalogue, tmp_path, objective="classify"))
    assert "fingerprint" not in metrics and len(metrics["epochs"]) == 2
    wf = load_weights(tmp_path / "modelo_audio.pth")
    assert wf.model_config.fp_dim == 0 and wf.model_config.target_frames == TINY_MODEL["target_frames"]
