"""OpenVINO runners for the bench: the serving backend itself (same .onnx, same compile settings).

The rows measure exactly what ``ast-serve --backend openvino --precision P`` runs, so they go through
:class:`serving.backends.openvino.OpenVinoBackend` rather than a bench-local session; only the thread count
comes from the bench.
"""

from __future__ import annotations

from pathlib import Path

from bench.speed.timing import Runner, Unavailable


def build_runner(path: Path | None, precision: str, threads: int) -> Runner:
    """A runner over the OpenVINO CPU backend at ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``).

    Raises:
        Unavailable: openvino missing, the artifact missing, or a precision this CPU / artifact cannot do.
    """
    if path is None or not Path(path).exists():
        raise Unavailable("failed: artifact not produced (see log)")
    try:
        from serving.backends.openvino import OpenVinoBackend, OpenVinoConfig
        from serving.contract import ModelError
    except ImportError as err:  # pragma: no cover - serving is always importable in the bench env
        raise Unavailable(f"serving not importable: {err}") from err
    try:
        backend = OpenVinoBackend(str(path), OpenVinoConfig(threads=threads), precision)
    except ModelError as err:
        raise Unavailable(f"unavailable: {err}") from err
    return backend.run
