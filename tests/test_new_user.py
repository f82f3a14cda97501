"""What a new user hits: the wrong kind of file given to each CLI is named in one line with the command that
takes it (serving.filekind), never a loader's own error (pickle refusal, INVALID_PROTOBUF, a format tag)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ast_export.cli import main as export_main
from serving.cli import main as serve_main
from serving.contract import describe_file, detect_kind
from tests.serving.fake_model import build_model
from training.cli import main as train_main

TRACEBACK = "Traceback (most recent call last)"


class _Scripted(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file of every kind a user may have lying around, as our tools write them."""
    root = tmp_path_factory.mktemp("newuser")
    run = root / "run"
    run.mkdir()
    torch.save({"format": "ast-sampleid/1", "labels": ["a"], "state_dict": {"w": torch.zeros(2)}},
               run / "modelo_audio.pth")
    torch.save({"format": "ast-sampleid-checkpoint/1", "model": {"w": torch.zeros(2)}}, run / "checkpoint.pt")
    torch.jit.save(torch.jit.script(_Scripted()), str(root / "m.ts"), _extra_files={"ast_sampleid": "{}"})
    torch.save({"module.v.patch_embed.proj.weight": torch.zeros(2)}, root / "audioset.pth")
    hf = root / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "audio-spectrogram-transformer"}))
    (hf / "model.safetensors").write_bytes(b"\0" * 16)
    (root / "plain").mkdir()
    return {"onnx": build_model(root / "m.onnx"), "weights": run / "modelo_audio.pth", "run": run,
            "checkpoint": run / "checkpoint.pt", "ts": root / "m.ts", "official": root / "audioset.pth",
            "hf": hf, "plain": root / "plain"}


def _invoke(main, args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert TRACEBACK not in result.output
    return result.exit_code, result.output


def test_kinds_are_detected_without_loading(files: dict[str, Path]) -> None:
    expected = {"onnx": "onnx", "weights": "weights", "run": "run_dir", "checkpoint": "checkpoint",
                "ts": "torchscript", "official": "official_ast", "hf": "hf_folder", "plain": "directory"}
    assert {key: detect_kind(path).name for key, path in files.items()} == expected


def test_pt2_archive_is_its_own_kind(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "m.pt2", "w") as archive:  # the member names torch.export.save writes
        archive.writestr("m/archive_format", "pt2")
        archive.writestr("m/models/model.json", "{}")
    assert detect_kind(tmp_path / "m.pt2").name == "pt2"


def test_onnx_as_weights_names_identify(files: dict[str, Path]) -> None:
    code, out = _invoke(export_main, ["onnx", "--weights", str(files["onnx"])])
    assert code != 0
    assert "is an exported ONNX model: give it to `ast-serve identify --model`" in out
    assert "could run code" not in out
    code, out = _invoke(train_main, ["--manifest", "x.csv", "--out", "o", "--init-from", str(files["onnx"])])
    assert code != 0 and "exported ONNX model" in out


def test_weights_as_model_names_export(files: dict[str, Path], tmp_path: Path) -> None:
    song = tmp_path / "s.wav"
    song.write_bytes(b"RIFF")
    code, out = _invoke(serve_main, ["identify", "--model", str(files["weights"]), str(song)])
    assert code == 2
    assert "is an ast-sampleid weights file: give it to `ast-export onnx --weights`" in out
    assert "INVALID_PROTOBUF" not in out


def test_checkpoint_as_weights_points_at_the_weights_beside_it(files: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(files["run"])
    code, out = _invoke(export_main, ["onnx", "--weights", "checkpoint.pt"])
    assert code != 0
    assert ("checkpoint.pt is a training checkpoint (for `ast-train --resume`); the weights are "
            "./modelo_audio.pth beside it") in out
    assert "unknown format" not in out


@pytest.mark.parametrize("key, words", [
    ("run", "the weights are"), ("plain", "is a folder"), ("hf", "`ast-export import hf FOLDER`"),
    ("ts", "exported TorchScript model"), ("official", "`ast-export import ast FILE`"),
])
def test_other_kinds_as_weights(files: dict[str, Path], key: str, words: str) -> None:
    code, out = _invoke(export_main, ["onnx", "--weights", str(files[key])])
    assert code != 0 and words in out, out


def test_describe_is_one_line(files: dict[str, Path]) -> None:
    for path in files.values():
        assert "\n" not in describe_file(path)


def test_text_and_audio_are_not_models(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    (tmp_path / "manifest.csv").write_text("song,sample\na.wav,r1\n")
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    sf.write(tmp_path / "a.flac", np.zeros(1600, dtype=np.float32), 16000)
    assert detect_kind(tmp_path / "manifest.csv").name == "unknown"
    assert {detect_kind(tmp_path / n).name for n in ("a.wav", "a.flac")} == {"audio"}


@pytest.mark.parametrize("key, words", [
    ("run", "is a training run folder; the weights are"), ("plain", "is a folder"),
    ("checkpoint", "is a training checkpoint"), ("ts", "`ast-serve` takes the .onnx export"),
])
def test_other_kinds_as_model(files: dict[str, Path], key: str, words: str, tmp_path: Path) -> None:
    song = tmp_path / "s.wav"
    song.write_bytes(b"RIFF")
    code, out = _invoke(serve_main, ["identify", "--model", str(files[key]), str(song)])
    assert code == 2 and words in out, out
    assert len([line for line in out.splitlines() if line.strip()]) == 1  # one line, no provider line before it


def test_wrong_kinds_for_verify_and_import(files: dict[str, Path], tmp_path: Path) -> None:
    from tests.export.conftest import random_weights

    real = random_weights(tmp_path / "modelo_audio.pth")
    code, out = _invoke(export_main, ["verify", str(real), "--weights", str(real)])
    assert code != 0 and "is an ast-sampleid weights file: give it to `ast-export onnx --weights`" in out
    code, out = _invoke(export_main, ["import", "ast", str(files["onnx"]), "--out", str(files["plain"] / "x.pth")])
    assert code != 0 and "is an exported ONNX model" in out
