"""Hardware and software facts recorded with every run (a figure without them is not reproducible)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "onnxruntime-gpu", "onnx", "transformers", "numpy", "timm", "openvino")


def _lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _gpu() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def load_average() -> list[float]:
    """1/5/15-minute load: how busy the (shared) machine was; noisy timings show up here."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def collect(threads: int) -> dict[str, Any]:
    """CPU model and flags of interest, cores, threads used, GPU, package versions, load at start."""
    import onnxruntime as ort

    cpu = _lscpu()
    flags = set(cpu.get("Flags", "").split())
    gpu = _gpu()
    return {
        "cpu_model": cpu.get("Model name", platform.processor()),
        "cpu_vendor": cpu.get("Vendor ID", "?"),
        "cores": os.cpu_count(),
        "threads": threads,
        "isa": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                               "amx_tile", "amx_bf16", "amx_int8", "amx_fp16"}),
        "cpu_family_model": f"{cpu.get('CPU family', '?')}/{cpu.get('Model', '?')}",
        "cpu_flags": sorted(flags),  # lscpu's whole Flags line: what the serving auto rule reads
        "hypervisor": cpu.get("Hypervisor vendor"),
        "gpu": gpu,
        "device": f"{gpu} (GPU)" if gpu else f"{cpu.get('Model name', 'CPU')}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": _version("torch"),
        "onnxruntime": ort.__version__,
        "openvino": _version("openvino"),
        "ort_providers": ort.get_available_providers(),
        "transformers": _version("transformers"),
        "versions": {p: _version(p) for p in PACKAGES},
        "load_average_start": load_average(),
    }
