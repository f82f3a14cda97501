"""What to export, declared once (optimum style): the graph's input and outputs, the precisions, the bars.

*How* each format is written lives in its own module (``onnx_export``, ``torchscript_export``, ``pt2_export``),
and which bar applies to which format and precision is that format's record in ``registry``. The figures
mirror DESIGN.md §3; the tests hold their own copy in ``tests/tolerances.py`` so a loosened exporter cannot
pass its own tests by accident. The IO names come from ``serving.contract`` (the hand-off to serving).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from serving.contract import INPUT_NAME, OUTPUT_NAMES

BATCH_AXIS = "batch"
DEFAULT_OPSET = 18
MIN_OPSET = 18
# torch.export Dim bounds: the upper bound only has to cover realistic serving batches.
MAX_EXPORT_BATCH = 4096
# Batch size of the example input used while tracing; not 1, so no size-1 specialisation creeps in.
TRACE_BATCH = 2
# Operators that would pin the frontend to the CPU EP (DESIGN.md: "no DFT/STFT node").
FORBIDDEN_OPS = frozenset({"DFT", "STFT"})
# Every precision ``--precision`` accepts; each format declares which of them it exports (its tolerances).
FP32 = "fp32"
PRECISIONS = (FP32, "fp16", "int8")


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

    @property
    def judged_on_decisions(self) -> bool:
        """Reduced precision: judged by held-out decisions, not by values."""
        return self.max_accuracy_drop is not None


# DESIGN.md §3. TorchScript/.pt2 run the very same torch kernels, so they get the tightest bar; the table
# names probs only, the embedding bar (1e-5) is our decision. Fused attention/LayerNorm/Gelu (``--optimize``)
# is still fp32 math, only reassociated: the fp32 ORT bar holds for it.
FP32_ORT = Tolerance(probs_max_abs=1e-5, embedding_max_abs=1e-4)
TORCH_SAME_KERNELS = Tolerance(probs_max_abs=1e-6, embedding_max_abs=1e-5)
# Reduced precision: judged by decisions, not by values (the diffs are still reported).
REDUCED_PRECISION = Tolerance(probs_max_abs=None, embedding_max_abs=None, min_top1_agreement=0.99,
                              max_accuracy_drop=0.5)


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
