"""The HTTP stack is an extra: ``ast-serve identify`` runs without it, ``ast-serve http`` says what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.serving.conftest import write_tone

ROOT = Path(__file__).resolve().parents[2]
HTTP_STACK = ("starlette", "uvicorn", "prometheus_client", "python_multipart", "multipart")
BANNED = {"torch", "timm", "models", "training", "ast_export", "torchaudio", "onnx"}
SCRIPT = f"""
import sys
for name in {HTTP_STACK!r}:
    sys.modules[name] = None
import serving.cli
try:
    serving.cli.main(sys.argv[1:], prog_name="ast-serve")
except SystemExit as stop:
    loaded = [m for m in {HTTP_STACK!r} if sys.modules.get(m) is not None]
    assert not loaded, loaded
    sys.exit(stop.code)
"""


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_identify_without_the_http_extra(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.5)
    ok = _serve("identify", "--model", str(fake_model), "--device", "cpu", "--format", "jsonl", str(song))
    assert ok.returncode == 0, ok.stderr
    missing = _serve("http", "--model", str(fake_model))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "error: ast-serve http needs the [http] extra (starlette is missing): pip install 'ast-sampleid[http]'"]


def test_http_sources_import_nothing_forbidden() -> None:
    for path in (ROOT / "serving" / "http").glob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                assert words[1].split(".")[0] not in BANNED, f"{path.name}: {line.strip()}"
