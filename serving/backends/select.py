"""The ``auto`` rule: which backend and precision score windows on this CPU (a GPU is tried before this).

The rule reads ``/proc/cpuinfo`` flags and the export's own precision. It is a pure function
(:func:`choose_cpu`) so it is tested with made-up flag sets. Figures behind it: bench/NOTES.md #17-#18 (one
2-core Xeon with AMX, KVM guest, shared with other work: noisy; the AVX-512-without-AMX branch is extrapolated
from it, not measured on such a CPU).

1. ``openvino`` not installed (or it cannot read the model) -> ORT at the export's precision.
2. An int8 export (NNCF's static, calibrated QDQ graph: QuantizeLinear / DequantizeLinear around the encoder's
   MatMuls, frontend fp32) -> **OpenVINO int8** on a CPU with ``avx512_vnni``, else ORT int8. Both read the
   same graph and run int8 kernels. One ``make bench`` run on a 2-core AMD EPYC (Zen 5, family 26; NOTES #19e):
   AST-base 300.6 vs ORT 396.3 ms/clip at batch 1, 310.7 vs 510.4 at batch 8, both 100 % top-1 agreement
   with fp32 (n = 32); tiny 2.7 vs 3.6 ms/clip at batch 8 (identify batches 16; ORT is ahead at batch 1 only,
   4.3 vs 3.7). Without AVX-512 VNNI, ORT (its kernels use ``avx_vnni`` too; int8 is emulated without VNNI).
3. ``--precision bf16`` or ``fp16`` -> OpenVINO (ORT has no such path for a float export).
4. A float export at ``--precision auto`` on a CPU with AMX-BF16 (``amx_bf16`` + ``amx_tile``) -> OpenVINO
   bf16 (frontend f32): AST-base 0.24 vs 1.05 s/clip (ORT fp32); tiny 2.8x ORT fp32, top-1 agreement 100 %.
5. A float export at ``auto`` on an **AMD** CPU with ``avx512_bf16`` (Zen 4 / Zen 5) -> OpenVINO bf16 (frontend
   f32): on a 2-core Zen 5 (EPYC, family 26), AST-base batch 1 0.75 s/clip vs 1.30 OpenVINO f32 and 0.80 ORT
   fp32, top-1 agreement 100 % (n = 32); tiny identify over real files 533x real time vs 412x ORT fp32
   (bench/NOTES.md #19). Intel's ``avx512_bf16`` without AMX is not taken: there bf16 ran at half the fp32
   rate (NOTES #10).
6. A float export at ``auto`` or ``fp32`` on an AVX-512 CPU (``avx512f``) -> OpenVINO f32: AST-base 0.83 vs
   1.05 s/clip, tiny 1.5x ORT fp32, probs within 3e-6 of ORT (the Intel Xeon of NOTES #18; on the Zen 5 above
   at ``--precision fp32`` ORT was faster, 0.80 vs 1.30 s/clip). ``avx512_fp16`` / ``amx_fp16`` never pick fp16 automatically (bf16 was faster here, and fp16's
   5 exponent bits leave less headroom); ``--precision fp16`` forces it.
7. A float export at ``auto`` or ``fp32`` on an AVX2 + FMA CPU without AVX-512 -> OpenVINO f32. On a 2-core
   AMD EPYC Zen 1 (family 23 model 1, AVX2 only; bench/NOTES.md #41): the retrieval encoder (tiny, 2 s windows)
   116.1 vs 93.3 clips/s for ORT fp32 (batch 32, synthetic), 111.7-112.9 vs 92.5-97.5 through ``ast-serve bench
   --files`` over 60 real songs (decoding included); AST-base 0.233-0.240 vs 0.219-0.228 clips/s at batch 1 and 8.
8. Anything else (no AVX2) -> ORT as exported: the parity-tested reference.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass

CPUINFO = "/proc/cpuinfo"
AMX_BF16 = frozenset({"amx_bf16", "amx_tile"})
VNNI = ("avx512_vnni", "avx_vnni")
AVX512 = "avx512f"
AVX2_FMA = frozenset({"avx2", "fma"})
AVX512_BF16 = "avx512_bf16"
AVX512_VNNI = "avx512_vnni"
AMD = "AuthenticAMD"
OPENVINO_ONLY = ("bf16", "fp16")


@dataclass(frozen=True)
class Choice:
    """What ``auto`` picked and why (the why goes into the one log line)."""

    backend: str
    precision: str
    reason: str


def cpu_flags(path: str = CPUINFO) -> frozenset[str]:
    """The ``flags`` of the first processor in ``/proc/cpuinfo`` (empty where there is none, e.g. macOS)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def cpu_vendor(path: str = CPUINFO) -> str:
    """The ``vendor_id`` of the first processor in ``/proc/cpuinfo`` (``GenuineIntel``, ``AuthenticAMD``; or "")."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        pass
    return ""


def openvino_installed() -> bool:
    """True when ``import openvino`` can be attempted (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def _flag_list(flags: Iterable[str], wanted: Iterable[str]) -> str:
    found = [f for f in wanted if f in flags]
    return "+".join(found) if found else "none"


def choose_cpu(flags: frozenset[str], artifact: str, requested: str, openvino: bool, vendor: str = "") -> Choice:
    """Backend and precision for a CPU run (see the module docstring for the rule and its figures).

    Args:
        flags: CPU flags (:func:`cpu_flags`).
        artifact: the export's precision (``fp32``, ``fp16``, ``int8``).
        requested: ``--precision`` (``auto`` or a precision).
        openvino: whether OpenVINO can be used.
        vendor: the CPU vendor (:func:`cpu_vendor`).

    Returns:
        The choice; an impossible precision is left for the chosen backend to refuse in one line.
    """
    if not openvino:
        return Choice("ort", requested, "openvino is not installed")
    if artifact == "int8" and requested in ("auto", "int8"):
        if AVX512_VNNI in flags:
            return Choice("openvino", "int8", "int8 export on a CPU with AVX512-VNNI: OpenVINO int8 is fastest")
        vnni = _flag_list(flags, VNNI)
        note = f"VNNI: {vnni}" if vnni != "none" else "no VNNI on this CPU: int8 is emulated, slower"
        return Choice("ort", "int8", f"int8 export: ORT int8 kernels ({note})")
    if requested in OPENVINO_ONLY:
        return Choice("openvino", requested, f"--precision {requested} needs OpenVINO")
    if artifact == "int8" or requested == "int8":
        return Choice("ort", requested, f"--precision {requested} of an {artifact} export: ORT runs it as exported")
    if requested == "auto" and AMX_BF16 <= flags:
        return Choice("openvino", "bf16", "CPU has AMX-BF16 (amx_bf16, amx_tile): OpenVINO bf16 is fastest")
    if requested == "auto" and vendor == AMD and AVX512_BF16 in flags:
        return Choice("openvino", "bf16", "AMD CPU with AVX512-BF16: OpenVINO bf16 is fastest")
    simd = _simd(flags)
    if simd is not None:
        isa, lacks = simd
        why = f"{isa} without {lacks}" if requested == "auto" else f"--precision {requested}, {isa}"
        return Choice("openvino", "fp32", f"{why}: OpenVINO f32 is faster than ORT fp32")
    return Choice("ort", requested, "no AVX2: ORT as exported, the reference path")


def _simd(flags: frozenset[str]) -> tuple[str, str] | None:
    """The widest vector ISA on which OpenVINO f32 beats ORT fp32, and the next one up that the CPU lacks (None:
    neither AVX-512 nor AVX2 + FMA)."""
    if AVX512 in flags:
        return "AVX-512", "AMX-BF16"
    if AVX2_FMA <= flags:
        return "AVX2", "AVX-512"
    return None
