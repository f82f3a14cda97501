"""A/B of frontend formulations in ONNX Runtime (bench/NOTES.md #16): run ``python -m bench.experiments.frontend_ab``.

* ``steps``: the Kaldi steps one by one (DC removal, pre-emphasis, then a window x DFT matmul), as the frontend
  was before the fold;
* ``fold``: ``models.KaldiFbank`` (DC removal and pre-emphasis folded into the basis);
* ``conv``: the folded basis applied as ``Conv1d(1, 2K, N, stride=shift)`` instead of unfold + matmul.

Prints max |diff| to ``steps`` and the median ms per clip over interleaved repetitions (tiny window, batch 8).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.config import FbankConfig
from models.fbank import LOG_FLOOR, KaldiFbank, dft_basis, feature_window

WINDOW_SAMPLES = 64240  # the tiny model's window (4.015 s at 16 kHz)


class StepsFbank(KaldiFbank):
    def __init__(self) -> None:
        super().__init__(FbankConfig())
        window = feature_window(self.cfg.window_type, self.cfg.window_size)  # [N]
        self.basis = dft_basis(window, self.cfg.padded_window_size).float()  # [N, 2K]: window x DFT only

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform - waveform.mean(dim=-1, keepdim=True)  # [B, S]
        frames = self._frames(x)  # [B, F, N]
        frames = frames - frames.mean(dim=-1, keepdim=True)  # [B, F, N]
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)  # [B, F, N]
        frames = frames - self.cfg.preemphasis_coefficient * previous  # [B, F, N]
        return (self._spectrum(frames) @ self.mel).clamp(min=LOG_FLOOR).log()  # [B, F, M]


class ConvFbank(KaldiFbank):
    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = waveform - waveform.mean(dim=-1, keepdim=True)  # [B, S]
        kernel = self.basis.T[:, None, :]  # [2K, 1, N]
        dft = torch.nn.functional.conv1d(x[:, None, :], kernel, stride=self.cfg.window_shift)  # [B, 2K, F]
        dft = dft.transpose(1, 2)  # [B, F, 2K]
        k = dft.shape[-1] // 2
        power = dft[..., :k].square() + dft[..., k:].square()  # [B, F, K]
        return (power @ self.mel).clamp(min=LOG_FLOOR).log()  # [B, F, M]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    mods = {"steps": StepsFbank(), "fold": KaldiFbank(FbankConfig()), "conv": ConvFbank(FbankConfig())}
    x = torch.randn(args.batch, WINDOW_SAMPLES)
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, module in mods.items():
            path = Path(tmp) / f"{name}.onnx"
            torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=18,
                              dynamic_shapes={"waveform": {0: torch.export.Dim("batch")}})
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = x.numpy()
    ref = sessions["steps"].run(None, {"waveform": feed})[0]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.reps):
        for name, sess in sessions.items():
            start = time.perf_counter()
            for _ in range(10):
                sess.run(None, {"waveform": feed})
            times[name].append((time.perf_counter() - start) / 10 / args.batch * 1e3)
    for name, sess in sessions.items():
        diff = np.abs(sess.run(None, {"waveform": feed})[0] - ref).max()
        print(f"{name:6s} {np.median(times[name]):.3f} ms/clip  max|diff to steps| {diff:.2e}")


if __name__ == "__main__":
    main()
