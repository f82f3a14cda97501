"""The variants measured per config: name, device and a lazy builder (so only one is in memory at a time)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.speed import openvino_runners as ovr
from bench.speed import torch_runners as tr
from bench.speed.artifacts import BenchModel
from bench.speed.ort_runners import OrtOptions, build_runner
from bench.speed.peer import PEER_BF16_NAME, PEER_NAME, build_peer
from bench.speed.timing import Runner

EAGER_FP32 = "ours: torch eager fp32"
TS_WARMUP = 3


@dataclass
class Variant:
    """A named way of scoring waveforms; ``build`` raises ``Unavailable`` with the reason when it cannot."""

    name: str
    device: str
    build: Callable[[], Runner]
    reference: bool = False  # our eager fp32: the agreement reference
    peer: bool = False
    warmup: int = 1  # untimed calls first (TorchScript's profiling executor optimises after 2 calls)


def _ort(bm: BenchModel, kind: str, opts: OrtOptions) -> Callable[[], Runner]:
    return lambda: build_runner(bm.artifacts.get(kind), opts)


def _ov(bm: BenchModel, kind: str, precision: str, threads: int) -> Callable[[], Runner]:
    return lambda: ovr.build_runner(bm.artifacts.get(kind), precision, threads)


def cpu_variants(bm: BenchModel, threads: int) -> list[Variant]:
    """Every CPU variant of issues 5 and 14, ours first (eager fp32 is the reference), the peers last.

    ORT rows keep ORT's default thread spinning (on) except the one that says "spinning off", which is what
    ``ast-serve`` runs; OpenVINO rows go through the serving backend on the unchanged fp32 (or int8) export.
    """
    cpu = OrtOptions(device="cpu", threads=threads)
    no_spin = OrtOptions(device="cpu", threads=threads, spinning=False)
    return [
        Variant(EAGER_FP32, "cpu", lambda: tr.eager(bm.model, "cpu"), reference=True),
        Variant("ours: torch bf16 (autocast encoder)", "cpu", lambda: tr.bf16_encoder(bm.model, "cpu")),
        Variant("ours: TorchScript fp32", "cpu", lambda: tr.torchscript(bm.artifacts.get("torchscript"), "cpu"),
                warmup=TS_WARMUP),
        Variant("ours: ORT plain fp32", "cpu", _ort(bm, "onnx", cpu)),
        Variant("ours: ORT plain fp32, spinning off (ast-serve default)", "cpu", _ort(bm, "onnx", no_spin)),
        Variant("ours: ORT optimized fp32 (fused attn)", "cpu", _ort(bm, "onnx_optimized", cpu)),
        Variant("ours: ORT int8 static NNCF (ast-export --precision int8)", "cpu", _ort(bm, "onnx_int8", cpu)),
        Variant("ours: ORT int8 dynamic of fused graph (bench-built)", "cpu", _ort(bm, "onnx_int8_pc", cpu)),
        Variant("ours: OpenVINO f32 (same .onnx)", "cpu", _ov(bm, "onnx", "fp32", threads)),
        Variant("ours: OpenVINO bf16 hint (same .onnx)", "cpu", _ov(bm, "onnx", "bf16", threads)),
        Variant("ours: OpenVINO f16 hint (same .onnx)", "cpu", _ov(bm, "onnx", "fp16", threads)),
        Variant("ours: OpenVINO int8 static NNCF (the ast-export int8 .onnx)", "cpu", _ov(bm, "onnx_int8", "int8", threads)),
        Variant(PEER_NAME, "cpu", lambda: build_peer(bm.ast_cfg, "cpu")[0], peer=True),
        Variant(PEER_BF16_NAME, "cpu", lambda: build_peer(bm.ast_cfg, "cpu", autocast_bf16=True)[0], peer=True),
    ]


def gpu_variants(bm: BenchModel) -> list[Variant]:
    """GPU variants; each build raises ``Unavailable("unmeasured: no GPU")`` on a CPU-only machine."""
    fp32 = OrtOptions(device="cuda", io_binding=True)
    tf32 = OrtOptions(device="cuda", io_binding=True, tf32=True)
    return [
        Variant("ours: torch eager fp32", "cuda", lambda: tr.eager(bm.model, "cuda"), reference=True),
        Variant("ours: torch bf16 (autocast encoder)", "cuda", lambda: tr.bf16_encoder(bm.model, "cuda")),
        Variant("ours: torch.compile fp32", "cuda", lambda: tr.compiled(bm.model, "cuda")),
        Variant("ours: ORT CUDA fp32 TF32 off, IO binding", "cuda", _ort(bm, "onnx_optimized", fp32)),
        Variant("ours: ORT CUDA fp32 TF32 on, IO binding", "cuda", _ort(bm, "onnx_optimized", tf32)),
        Variant("ours: ORT CUDA fp16, IO binding", "cuda", _ort(bm, "onnx_fp16", fp32)),
        Variant(PEER_NAME, "cuda", lambda: build_peer(bm.ast_cfg, "cuda")[0], peer=True),
    ]
