"""bench/results: the committed result files (tables, raw JSON and charts) are not git-ignored."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
@pytest.mark.parametrize("suffix", [".png", ".md", ".json"])
def test_result_files_are_not_ignored(suffix: str) -> None:
    files = sorted(RESULTS.glob(f"*{suffix}"))
    assert files, f"no committed bench/results/*{suffix}"
    rel = [str(f.relative_to(REPO)) for f in files]
    proc = subprocess.run(["git", "check-ignore", "--no-index", "-v", *rel], cwd=REPO, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1, proc.stdout  # 0 = some path is ignored (stdout names the rule)
