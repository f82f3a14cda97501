"""ONNX Runtime sessions and runners for the bench: explicit threads, optimisation level, profiling, IO binding.

The bench builds its own sessions (instead of going through ``serving``) so it can vary the knobs it
measures; ``ast-serve bench`` is run separately to record what users get.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.speed.timing import Runner, Unavailable

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
INPUT = "waveform"
OUTPUTS = ["probs", "embedding"]


@dataclass
class OrtOptions:
    """Session knobs.

    Attributes:
        device: "cpu" or "cuda".
        threads: intra-op threads; 0 = ORT default (one per physical core).
        opt_level: key of OPT_LEVELS.
        tf32: CUDA only; off by default for fp32 parity.
        io_binding: bind input/outputs explicitly (the GPU path; also runs on CPU).
        profile_prefix: when set, ORT writes a per-op JSON trace with this prefix.
        spinning: idle intra-/inter-op threads busy-wait; ``None`` = ORT's default (on). ``ast-serve`` turns it
            off (bench/NOTES.md #17).
    """

    device: str = "cpu"
    threads: int = 2
    opt_level: str = "all"
    tf32: bool = False
    io_binding: bool = False
    profile_prefix: str | None = None
    spinning: bool | None = None


SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def cuda_available() -> bool:
    """True when the CUDA EP is listed and a GPU is visible (ORT silently falls back otherwise)."""
    if CUDA_EP not in ort.get_available_providers():
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is always present in the bench env
        return False


def make_session(path: Path, opts: OrtOptions, optimized_path: Path | None = None) -> ort.InferenceSession:
    """Create a session; raise :class:`Unavailable` for CUDA without a GPU or a silent CPU fallback.

    ``optimized_path``: where ORT should save the graph it actually runs (for profiling).
    """
    so = ort.SessionOptions()
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    so.graph_optimization_level = OPT_LEVELS[opts.opt_level]
    so.intra_op_num_threads = opts.threads
    so.log_severity_level = 3
    if opts.spinning is not None:
        for key in SPINNING_KEYS:
            so.add_session_config_entry(key, "1" if opts.spinning else "0")
    if opts.profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = opts.profile_prefix
    if opts.device == "cuda":
        if not cuda_available():
            raise Unavailable("unmeasured: no GPU")
        providers: list = [(CUDA_EP, {"use_tf32": "1" if opts.tf32 else "0"}), CPU_EP]
    else:
        providers = [CPU_EP]
    sess = ort.InferenceSession(str(path), so, providers=providers)
    if opts.device == "cuda" and sess.get_providers()[0] != CUDA_EP:
        raise Unavailable(f"CUDA EP did not initialise (got {sess.get_providers()})")
    return sess


def runner(sess: ort.InferenceSession, io_binding: bool = False) -> Runner:
    """A runner over a session: plain ``run`` or IO binding (input copied once to the session's device)."""
    if not io_binding:
        return lambda x: tuple(sess.run(OUTPUTS, {INPUT: x}))
    device = "cuda" if sess.get_providers()[0] == CUDA_EP else "cpu"

    def run_bound(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        binding = sess.io_binding()
        binding.bind_ortvalue_input(INPUT, ort.OrtValue.ortvalue_from_numpy(x, device, 0))
        for name in OUTPUTS:
            binding.bind_output(name, device)
        sess.run_with_iobinding(binding)
        probs, emb = binding.get_outputs()
        return probs.numpy(), emb.numpy()  # copied to host

    return run_bound


def build_runner(path: Path | None, opts: OrtOptions) -> Runner:
    """Session + runner for an artifact path; ``None`` means the exporter could not produce it."""
    if opts.device == "cuda" and not cuda_available():
        raise Unavailable("unmeasured: no GPU")
    if path is None or not Path(path).exists():
        raise Unavailable("failed: artifact not produced (see log)")
    sess = make_session(Path(path), opts)
    return runner(sess, opts.io_binding)


def count_ops(path: Path, op_types: tuple[str, ...] = ("Attention", "MultiHeadAttention")) -> dict[str, int]:
    """Count nodes of the given op types in an ONNX file (fused attention check)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = dict.fromkeys(op_types, 0)
    for node in model.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
    counts["nodes"] = len(model.graph.node)
    return {k: v for k, v in counts.items() if v}
