"""ORT per-op profile of an exported graph: where the time goes, frontend vs encoder, fused attention count.

The session writes its optimised graph (``optimized_model_filepath``) next to the trace, so node names in the
trace can be mapped back to the graph ORT actually ran. The frontend is every node upstream of the patch
embedding's Conv (waveform -> log-mel -> normalise -> pad/crop); everything else is the encoder.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bench.speed.ort_runners import INPUT, OUTPUTS, OrtOptions, make_session

log = logging.getLogger(__name__)

KERNEL_SUFFIX = "_kernel_time"
TOP_NODES = 12


def frontend_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that feed the first Conv (the patch embedding): the frontend."""
    producers = {out: node for node in model.graph.node for out in node.output}
    conv = next((n for n in model.graph.node if n.op_type in ("Conv", "FusedConv")), None)
    if conv is None:
        return set()
    seen: set[str] = set()
    stack = [conv.input[0]]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(node.input)
    return seen


def _kernel_events(trace_path: Path) -> list[dict[str, Any]]:
    events = json.loads(trace_path.read_text())
    return [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith(KERNEL_SUFFIX)]


def summarise(trace_path: Path, graph: onnx.ModelProto, runs: int) -> dict[str, Any]:
    """Per-op-type and per-node totals (ms per run), frontend share, attention-node counts."""
    front = frontend_nodes(graph)
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    front_us = total_us = 0.0
    for event in _kernel_events(trace_path):
        node = event["name"][: -len(KERNEL_SUFFIX)]
        op = event.get("args", {}).get("op_name", "?")
        dur = float(event.get("dur", 0))
        by_op[op] += dur
        by_node[f"{node} ({op})"] += dur
        total_us += dur
        if node in front:
            front_us += dur
    ops = Counter(n.op_type for n in graph.graph.node)
    per_run = 1000.0 * runs
    return {
        "runs": runs,
        "kernel_ms_per_run": total_us / per_run,
        "frontend_ms_per_run": front_us / per_run,
        "frontend_share": front_us / total_us if total_us else 0.0,
        "by_op_ms_per_run": {k: v / per_run for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "top_nodes_ms_per_run": {
            k: v / per_run for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])[:TOP_NODES]
        },
        "node_count": sum(ops.values()),
        "attention_nodes": {k: ops.get(k, 0) for k in ("Attention", "MultiHeadAttention")},
        "frontend_ops": dict(Counter(n.op_type for n in graph.graph.node if n.name in front)),
    }


def profile(path: Path, waveforms: np.ndarray, runs: int = 2, opts: OrtOptions | None = None) -> dict[str, Any]:
    """Profile ``runs`` calls on ``waveforms`` [B, S] (after one unprofiled-equivalent warm-up call)."""
    opts = opts or OrtOptions()
    with tempfile.TemporaryDirectory(prefix="ortprof-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        so_opts = OrtOptions(**{**opts.__dict__, "profile_prefix": str(Path(tmp) / "trace")})
        sess = make_session(path, so_opts, optimized)
        sess.run(OUTPUTS, {INPUT: waveforms})  # warm-up (profiled too; counted in the per-run average)
        start = time.perf_counter()
        for _ in range(runs):
            sess.run(OUTPUTS, {INPUT: waveforms})
        wall = (time.perf_counter() - start) / runs
        trace = Path(sess.end_profiling())
        graph = onnx.load(str(optimized), load_external_data=False)
        summary = summarise(trace, graph, runs + 1)  # warm-up included in the trace
    summary["wall_ms_per_run"] = 1000.0 * wall
    summary["batch"] = int(waveforms.shape[0])
    summary["threads"] = opts.threads
    summary["opt_level"] = opts.opt_level
    return summary

