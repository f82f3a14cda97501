"""The package boundary: serving runs end to end with torch & co blocked; unreadable files are per-file errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.serving.conftest import write_tone

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "torchaudio", "timm", "models", "training", "ast_export", "onnx", "transformers")
SCRIPT = f"""
import json, sys
for name in {BLOCKED!r}:
    sys.modules[name] = None  # any import of these now raises ImportError
import serving.cli
code = 0
try:
    serving.cli.main(sys.argv[1:], prog_name="ast-serve")
except SystemExit as stop:
    code = stop.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r} and sys.modules[m] is not None)
print("BOUNDARY " + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def _serve(args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, timeout=120,
                          **kwargs)


def test_identify_works_with_torch_blocked(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "song one.flac", 2.5, rate=44100, channels=2)
    odd = write_tone(os.path.join(os.fsencode(tmp_path), b"\xff\xfe.wav"), 1.0)
    plots = tmp_path / "plots"
    proc = _serve(["identify", "--model", str(fake_model), "--format", "jsonl", "--plot", str(plots),
                   os.fsencode(song), odd, os.fsencode(tmp_path / "nothing*.flac")])
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, stderr  # the glob that matched nothing failed; the rest were scored
    rows = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [r["error"] for r in rows] == [None, None, "no such file"]
    assert rows[1]["path"].endswith("\\xff\\xfe.wav")
    assert json.loads(stderr.split("BOUNDARY ", 1)[1].splitlines()[0]) == []
    assert len(list(plots.glob("*.png"))) == 2
    for cmd in (["info", "--model", str(fake_model)], ["bench", "--model", str(fake_model), "--seconds", "0.1"]):
        assert _serve(cmd).returncode == 0


def test_index_build_and_identify_index_work_with_torch_blocked(tmp_path: Path) -> None:
    from tests.serving.fake_model import build_fingerprint_model
    from tests.serving.retrieval_helpers import records_csv, song_from, synth_record, write

    model = build_fingerprint_model(tmp_path / "fp.onnx")
    csv = records_csv(tmp_path / "records", ["alpha", "beta"], [1, 2])
    cat = tmp_path / "cat"
    build = _serve(["index", "build", "--model", str(model), "--records", str(csv), "--out", str(cat),
                    "--hop", "0.1", "--scales", "0.9,1,1.1"])
    stderr = build.stderr.decode("utf-8", "replace")
    assert build.returncode == 0 and "Traceback" not in stderr, stderr
    assert json.loads(stderr.split("BOUNDARY ", 1)[1].splitlines()[0]) == []
    song = write(tmp_path / "song.wav", song_from(synth_record(2), 2.0, 7.0, 1.0, [1.0], 8.0))
    proc = _serve(["identify", "--model", str(model), "--index", str(cat), "--format", "jsonl", str(song)])
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert json.loads(stderr.split("BOUNDARY ", 1)[1].splitlines()[0]) == []
    [row] = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [m["sample"] for m in row["matches"]] == ["beta"]
    assert _serve(["index", "info", str(cat)]).returncode == 0


def test_contract_costs_numpy_and_decoding_only() -> None:
    """``import serving.contract`` (what training and export share with serving) pulls in no runtime stack."""
    heavy = ("torch", "onnxruntime", "onnx", "faiss", "click", "tqdm", "starlette", "uvicorn", "matplotlib")
    code = ("import sys\nimport serving.contract\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_serving_sources_import_nothing_forbidden() -> None:
    banned = {"torch", "timm", "models", "training", "ast_export", "torchaudio", "onnx"}
    for path in (ROOT / "serving").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                assert words[1].split(".")[0] not in banned, f"{path.name}: {line.strip()}"


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_override() -> None:  # pragma: no cover - runs in the child before exec
    """Remove root's permission-bypass capabilities, so mode 000 binds root as it binds everyone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)


def test_unreadable_file_is_a_per_file_error(fake_model: Path, tmp_path: Path) -> None:
    """chmod 000. Root ignores modes, so as root the CLI runs without CAP_DAC_OVERRIDE/READ_SEARCH.

    If the capabilities cannot be dropped (no CAP_SETPCAP) the file stays readable: then it must simply be
    scored; either way no traceback and the good file is scored.
    """
    good = write_tone(tmp_path / "good.flac", 1.0)
    locked = write_tone(tmp_path / "locked.flac", 1.0)
    os.chmod(locked, 0o000)
    preexec = _drop_file_override if os.geteuid() == 0 else None
    probe = subprocess.run([sys.executable, "-c", f"open({str(locked)!r}, 'rb')"], capture_output=True,
                           preexec_fn=preexec)
    unreadable = probe.returncode != 0
    proc = _serve(["identify", "--model", str(fake_model), "--format", "jsonl", str(good), str(locked)],
                  preexec_fn=preexec)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 2 and rows[0]["error"] is None, stderr
    if unreadable:
        assert rows[1]["error"] == "permission denied", stderr
        assert proc.returncode == 1 and f"{locked}: permission denied" in stderr
    else:  # pragma: no cover - only where root keeps its override
        assert rows[1]["error"] is None and proc.returncode == 0


def test_broken_pipe_is_quiet(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "s.flac", 1.0)
    serve = subprocess.Popen([sys.executable, "-c", SCRIPT, "identify", "--model", str(fake_model),
                              "--format", "jsonl", *[str(song)] * 300], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert serve.stdout is not None
    serve.stdout.readline()
    serve.stdout.close()  # the reader leaves, like `| head -1`
    _, err = serve.communicate(timeout=120)
    assert b"Traceback" not in err and serve.returncode in (0, 1)
