"""What to export, declared once (optimum style): the graph's input, its outputs, and tolerances per format.

*How* each format is written lives in ``onnx_export.py``, ``torchscript_export.py`` and ``pt2_export.py``;
verification (``verify.py``) reads the tolerances from here. The figures mirror DESIGN.md §3; the tests hold
their own copy in ``tests/tolerances.py`` so a loosened exporter cannot pass its own tests by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

INPUT_NAME = "waveform"
OUTPUT_NAMES = ("probs", "embedding")
BATCH_AXIS = "batch"
DEFAULT_OPSET = 18
MIN_OPSET = 18
# torch.export Dim bounds: the upper bound only has to cover realistic serving batches.
MAX_EXPORT_BATCH = 4096
# Batch size of the example input used while tracing; not 1, so no size-1 specialisation creeps in.
TRACE_BATCH = 2
# Operators that would pin the frontend to the CPU EP (DESIGN.md: "no DFT/STFT node").
FORBIDDEN_OPS = frozenset({"DFT", "STFT"})
VARIANTS = ("fp32", "fp16", "int8", "fp32-optimized")


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: its name and axis names (a str axis is dynamic, an int is fixed)."""

    name: str
    axes: tuple[str, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class Tolerance:
    """Acceptance bar of one artifact kind against the eager model.

    Attributes:
        probs_max_abs: max |artifact - eager| on ``probs``; None = not a bar (reported only).
        embedding_max_abs: same for ``embedding``.
        min_top1_agreement: fraction of windows whose argmax must match eager's.
        max_accuracy_drop: allowed song-level top-1 accuracy drop on held-out songs, in points (0-100);
            None when the bar is exact parity instead.
    """

    probs_max_abs: float | None
    embedding_max_abs: float | None
    min_top1_agreement: float = 1.0
    max_accuracy_drop: float | None = None


# DESIGN.md §3. TorchScript/.pt2 run the very same torch kernels, so they get the tightest bar; the table
# names probs only, the embedding bar (1e-5) is our decision.
FP32_ORT = Tolerance(probs_max_abs=1e-5, embedding_max_abs=1e-4)
TORCH_SAME_KERNELS = Tolerance(probs_max_abs=1e-6, embedding_max_abs=1e-5)
# Reduced precision: judged by decisions, not by values (the diffs are still reported).
REDUCED_PRECISION = Tolerance(probs_max_abs=None, embedding_max_abs=None, min_top1_agreement=0.99,
                              max_accuracy_drop=0.5)

TOLERANCES: dict[str, Tolerance] = {
    "onnx/fp32": FP32_ORT,
    # Fused attention/LayerNorm/Gelu are still fp32 math, only reassociated: the fp32 bar holds.
    "onnx/fp32-optimized": FP32_ORT,
    "onnx/fp16": REDUCED_PRECISION,
    "onnx/int8": REDUCED_PRECISION,
    "torchscript/fp32": TORCH_SAME_KERNELS,
    "pt2/fp32": TORCH_SAME_KERNELS,
}


@dataclass(frozen=True)
class ExportSpec:
    """The scoring graph's contract (DESIGN.md "Exported graph")."""

    window_samples: int
    num_classes: int
    embed_dim: int
    inputs: tuple[TensorSpec, ...] = field(init=False)
    outputs: tuple[TensorSpec, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", (TensorSpec(INPUT_NAME, (BATCH_AXIS, str(self.window_samples))),))
        object.__setattr__(self, "outputs", (TensorSpec(OUTPUT_NAMES[0], (BATCH_AXIS, str(self.num_classes))),
                                             TensorSpec(OUTPUT_NAMES[1], (BATCH_AXIS, str(self.embed_dim)))))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def output_shape(self, name: str, batch: int) -> tuple[int, int]:
        """Expected shape of output ``name`` for a batch of ``batch`` windows."""
        width = {OUTPUT_NAMES[0]: self.num_classes, OUTPUT_NAMES[1]: self.embed_dim}[name]
        return batch, width

    def example_input(self, batch: int = TRACE_BATCH, seed: int = 0) -> torch.Tensor:
        """Music-free but non-degenerate waveform batch for tracing: [batch, window_samples] in [-1, 1]."""
        gen = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, self.window_samples, generator=gen) * 2 - 1) * 0.5  # [B, S]

    def torch_dynamic_shapes(self) -> tuple[dict[int, object]]:
        """``dynamic_shapes`` for torch.export / the dynamo ONNX exporter: batch is dynamic."""
        batch = torch.export.Dim(BATCH_AXIS, min=1, max=MAX_EXPORT_BATCH)
        return ({0: batch},)


def tolerance_for(fmt: str, precision: str) -> Tolerance:
    """Tolerance of an artifact kind, e.g. ``tolerance_for("onnx", "int8")``."""
    key = f"{fmt}/{precision}"
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance declared for {key}; known: {', '.join(sorted(TOLERANCES))}")
    return TOLERANCES[key]
