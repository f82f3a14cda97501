"""Run ``ast-serve bench`` on an exported model and record its output verbatim plus parsed figures.

Note: ``ast-serve bench`` reports its real-time factor in *song* seconds at the serving hop (default: half a
window), i.e. how fast a song is scanned; the bench tables use clip seconds per compute second. Both are kept.
It runs with ``--format json``; ``parsed`` is that object, plus ``real-time_factor`` (= ``rtf``), the key the
goal summary reads.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVE_TIMEOUT_S = 300
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def _serve_exe() -> list[str]:
    exe = Path(sys.executable).with_name("ast-serve")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ast-serve")
    return [found] if found else [sys.executable, "-m", "serving.cli"]


def parse_output(text: str) -> dict[str, Any]:
    """``key  value`` lines -> dict; numbers parsed where the value starts with one."""
    parsed: dict[str, Any] = {}
    for line in text.splitlines():
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) != 2:
            continue
        key, value = parts
        match = NUMBER.match(value)
        parsed[key.replace(" ", "_")] = float(match.group()) if match else value
    return parsed


def _parse(stdout: str) -> dict[str, Any]:
    try:
        parsed = json.loads(stdout)
    except json.JSONDecodeError:  # an older ast-serve without --format json
        return parse_output(stdout)
    parsed["real-time_factor"] = parsed.get("rtf")
    return parsed


def run_serve_bench(model: Path, batch_size: int, seconds: float, threads: int, hop_s: float | None = None,
                    backend: str = "auto") -> dict[str, Any]:
    """Run ``ast-serve bench --format json`` on CPU; return command, stdout, parsed figures and exit code."""
    cmd = _serve_exe() + ["bench", "--model", str(model), "--device", "cpu", "--threads", str(threads),
                          "--batch-size", str(batch_size), "--seconds", str(seconds), "--backend", backend,
                          "--format", "json"]
    if hop_s:
        cmd += ["--hop", str(hop_s)]
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SERVE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"command": cmd, "error": str(err)}
    if proc.returncode != 0:
        log.warning("ast-serve bench failed: %s", proc.stderr.strip().splitlines()[-1:] or proc.returncode)
    return {
        "command": " ".join(cmd),
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
        "parsed": _parse(proc.stdout) if proc.returncode == 0 else {},
    }
