"""Experiment: the tiny AST's embedding trained as a fingerprint on FULL records (NT-Xent), for retrieval.

    python -m bench.experiments.fingerprint --bench BENCH_DIR --minutes 45 --out runs/fp
    python -m bench.accuracy.retrieval_eval BENCH_DIR --out runs/fp-eval --weights runs/fp/fp_weights.pth

A batch holds ``--batch`` pairs. Anchor: a clean 2 s window of a record (``records.csv``'s ``record_path``; the
sampled segment is never used) played at the catalogue time-scale nearest to the positive's speed. Positive: the
same place played at a random speed x0.75-1.35, shifted by up to half a catalogue hop, sometimes cut to a short
piece and looped (a chopped sample), tempo-stretched, then the producer chain of ``training.data.augment``
(pitch-only, filters, lo-fi, gain ramp, reverb, vinyl) mixed over synthesized drums + bass, sometimes another
record, and noise at -6..+9 dB. Loss: NT-Xent over the 2 x batch views (every other view is a negative, other
windows of the same record included). The learning rate follows a cosine over the *time* budget, so a shared
CPU shortens the run instead of stretching it. The result is a project weights file (``fp_dim`` 128, 2 s
windows) that ``ast-export`` and ``ast-serve index`` take as they are. It is the measured starting point for
moving the objective into ``ast-train`` (README "Accuracy").
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import AUDIOSET_MEAN, AUDIOSET_STD, WEIGHTS_FORMAT, WeightsFile, save_weights
from models.config import ASTConfig, FbankConfig, window_samples
from models.scoring import ScoringModel
from serving.contract import INDEX_SCALES, load_audio
from training.data import augment as A
from training.data import synth

SR = 16000
FP_DIM = 128
SCALES = np.array(INDEX_SCALES)  # the catalogue's time-scales (serving.contract)
torch.set_num_threads(2)


def read_records(csv_path: Path) -> list[tuple[str, np.ndarray]]:
    rows = list(csv.DictReader(open(csv_path)))
    return [(r["sample"], load_audio(csv_path.parent / r["record_path"], SR)) for r in rows]


class Fingerprinter(nn.Module):
    def __init__(self, frames: int, classes: int, dim: int = FP_DIM) -> None:
        super().__init__()
        cfg = ASTConfig(embed_dim=192, depth=4, num_heads=3, fstride=16, tstride=16, target_frames=frames,
                        global_pool="avg", num_classes=classes)
        self.scoring = ScoringModel(FbankConfig(), cfg, -4.2677393, 4.5689974)
        self.proj = nn.Sequential(nn.Linear(192, 192), nn.GELU(), nn.Linear(192, dim))
        self.window = window_samples(FbankConfig(), cfg)

    def embed(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            feats = self.scoring.features(wave)  # [B, T, M]
        pooled = self.scoring.ast.pool(self.scoring.ast.forward_features(feats))  # [B, D]
        return F.normalize(self.proj(pooled), dim=-1), self.scoring.ast.classify(pooled)


class Beds:
    def __init__(self, rng: np.random.Generator, n: int, count: int = 24) -> None:
        self.items = []
        for _ in range(count):
            bpm = float(rng.uniform(75, 110))
            mix = synth.drum_loop(rng, n, bpm, float(rng.uniform(0.0, 0.3)), SR)
            mix = mix + 10 ** (rng.uniform(-9, -2) / 20) * synth.bass_line(rng, n, bpm, sr=SR)
            self.items.append(mix.astype(np.float32))

    def get(self, rng: np.random.Generator, n: int) -> np.ndarray:
        bed = self.items[int(rng.integers(len(self.items)))]
        s = int(rng.integers(0, len(bed) - n + 1))
        return bed[s:s + n]


def segment(rec: np.ndarray, start: int, length: int) -> np.ndarray:
    a, b = max(0, start), min(len(rec), start + length)
    out = rec[a:b]
    return np.pad(out, (a - start, length - len(out) - (a - start))) if len(out) < length else out.copy()


def make_pair(rng: np.random.Generator, records: list, beds: Beds, W: int, cfg: A.AugmentConfig):
    r = int(rng.integers(len(records)))
    rec = records[r][1]
    v = float(np.exp(rng.uniform(np.log(0.75), np.log(1.35))))
    s = float(SCALES[np.argmin(np.abs(np.log(SCALES) - np.log(v)))])
    centre = int(rng.integers(int(W * 0.7), max(int(W * 0.7) + 1, len(rec) - int(W * 0.7))))
    # anchor: record at index scale s, window centred at `centre`
    la = int(round(W * s))
    anchor = A.fix_length(A.change_speed(segment(rec, centre - la // 2, la), s), W)
    # positive: record at speed v, centre jittered by up to half a hop (0.25 s) of song time
    jitter = int(rng.uniform(-0.25, 0.25) * SR * v)
    lp = int(round(W * v * 1.3))
    raw = segment(rec, centre + jitter - lp // 2, lp)
    pos = A.change_speed(raw, v)  # ~1.3 W long
    if rng.random() < 0.35:  # a short chopped piece, looped (what a 1.5-2 s sample looks like)
        piece = int(rng.uniform(0.6, 1.0) * W)
        off = int(rng.integers(0, max(1, len(pos) - piece)))
        pos = A.loop_to(A.fade(pos[off:off + piece].copy()), len(pos), int(rng.integers(0, piece)))
    if rng.random() < cfg.tempo_prob:
        pos = A.time_stretch(pos, A.random_speed_factor(rng, cfg.tempo_max))
    st = max(0, (len(pos) - W) // 2)
    pos = A.fix_length(pos[st:st + W], W)
    pos = A.length_preserving(pos, rng, cfg, 1.0)
    bed = beds.get(rng, W)
    if rng.random() < 0.3:  # other music underneath
        o = records[int(rng.integers(len(records)))][1]
        bed = bed + segment(o, int(rng.integers(0, max(1, len(o) - W))), W) * np.float32(rng.uniform(0.1, 0.5))
    snr = rng.uniform(-6.0, 9.0)
    pos = A.mix_at_snr(pos, bed + A.noise(rng, W) * np.float32(10 ** (rng.uniform(-45, -30) / 20)), snr)
    return A.peak_limit(anchor), A.peak_limit(pos.astype(np.float32)), r


def nt_xent(z: torch.Tensor, tau: float) -> torch.Tensor:
    n = z.shape[0] // 2
    sim = z @ z.T / tau  # [2n, 2n]
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train(args: argparse.Namespace, records: list) -> Fingerprinter:
    model = Fingerprinter(args.frames, len(records))
    W = model.window
    cfg = A.AugmentConfig(pitch_prob=0.15, pitch_semitones=3.0, tempo_prob=0.15, tempo_max=0.2, filter_prob=0.6,
                          lofi_prob=0.15, reverb_prob=0.2, vinyl_prob=0.2, gain_prob=0.5)
    rng = np.random.default_rng(args.seed)
    beds = Beds(rng, W + 6 * SR)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    start, step, total_s = time.time(), 0, args.minutes * 60
    losses = []
    while True:
        el = time.time() - start
        if el > total_s:
            break
        progress = el / total_s  # time-based schedule: robust to a shared CPU
        lr = args.lr * (min(1.0, (step + 1) / 100) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))))
        for g in opt.param_groups:
            g["lr"] = lr
        pairs = [make_pair(rng, records, beds, W, cfg) for _ in range(args.batch)]
        a = torch.from_numpy(np.stack([p[0] for p in pairs]))
        b = torch.from_numpy(np.stack([p[1] for p in pairs]))
        y = torch.tensor([p[2] for p in pairs])
        model.train()
        z, logits = model.embed(torch.cat([a, b]))
        loss = nt_xent(z, args.tau)
        if args.ce > 0:
            loss = loss + args.ce * F.cross_entropy(logits, torch.cat([y, y]))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.3f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=Path, required=True, help="benchmark folder (records.csv)")
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tau", type=float, default=0.07)
    ap.add_argument("--ce", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/fp"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    closed = read_records(args.bench / "records.csv")
    start = time.time()
    model = train(args, closed)
    save_weights(args.out / "fp_weights.pth", weights_file(model, [name for name, _ in closed], args.frames))
    print(json.dumps({"train_s": round(time.time() - start, 1), "weights": str(args.out / "fp_weights.pth")}))


def weights_file(model: Fingerprinter, labels: list[str], frames: int) -> WeightsFile:
    """The experiment's model as a project weights file: the projection becomes ``AST.fp_head``."""
    cfg = dataclasses.replace(model.scoring.ast.cfg, fp_dim=FP_DIM, target_frames=frames)
    state = dict(model.scoring.ast.state_dict())
    state.update({f"fp_head.{k}": v for k, v in model.proj.state_dict().items()})
    return WeightsFile(format=WEIGHTS_FORMAT, model_config=cfg, fbank_config=FbankConfig(), labels=labels,
                       norm_mean=AUDIOSET_MEAN, norm_std=AUDIOSET_STD, state_dict=state,
                       train={"experiment": "bench.experiments.fingerprint"})


if __name__ == "__main__":
    main()
