"""The default "no match" threshold end to end on the fake model: training's calibration rule picks it from null
clips (silence, noise, drums-only, drums and bass) scored as ast-serve scores them, the metadata carries it, and
``ast-serve identify`` without --threshold then answers "no match" for such audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from serving.cli import main
from serving.identify import IdentifyOptions, identify
from serving.matches import MatchOptions
from serving.session import ModelSession
from tests.serving.fake_model import SAMPLE_RATE, build_model, metadata
from training.calibrate import DRUM_BEDS, measure, pick_threshold, synth_beds

FAR = 0.01


def _write(folder: Path, clips: list[np.ndarray]) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i, clip in enumerate(clips):
        sf.write(folder / f"null{i:03d}.wav", clip, SAMPLE_RATE)
        paths.append(str(folder / f"null{i:03d}.wav"))
    return paths


def test_calibrated_default_rejects_silence_noise_and_drums(tmp_path: Path) -> None:
    beds = synth_beds(SAMPLE_RATE, seconds=3.0)
    calib, held = beds[::2], beds[1::2]  # calibrate on half, check on the other half
    plain = build_model(tmp_path / "plain.onnx")
    results = identify(ModelSession(plain), _write(tmp_path / "calib", calib),
                       IdentifyOptions(match=MatchOptions(top_k=1, threshold=0.0)))
    null_scores = np.array([r.matches[0].score for r in results])
    threshold = pick_threshold(null_scores, FAR)
    assert measure(threshold, null_scores, np.zeros((0, 4)), [], FAR).far_measured <= FAR
    model = build_model(tmp_path / "calibrated.onnx", meta=metadata(threshold=threshold, threshold_far=FAR))
    kinds = {"drums": held[0], "drums+bass": held[DRUM_BEDS // 2], "noise": held[-5],
             "silence": held[-1]}
    paths = _write(tmp_path / "held", list(kinds.values()))
    out = CliRunner().invoke(main, ["identify", "--model", str(model), "--format", "json", *paths])
    assert out.exit_code == 0, out.output
    assert [r["matches"] for r in json.loads(out.stdout)] == [[]] * len(kinds), kinds.keys()
