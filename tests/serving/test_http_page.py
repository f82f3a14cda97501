"""The page at ``GET /`` in a real headless Chromium: it loads, has its controls, and its script runs clean.

Slow, and skipped unless Debian's ``chromium`` is installed at /usr/bin/chromium (never installed by tests).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.serving.http_helpers import running

CHROMIUM = Path("/usr/bin/chromium")
RUN_TIMEOUT_S = 60

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")]


def test_page_renders_in_headless_chromium(fake_model: Path, tmp_path: Path) -> None:
    with running(fake_model) as srv:
        proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
                               "--virtual-time-budget=3000", "--dump-dom", f"{srv.url}/"],
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for marker in ('id="file"', 'id="timeline"', 'id="player"', 'id="matches"', "Identify"):
        assert marker in dom, marker
    console_errors = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln and "Uncaught" in ln]
    assert not console_errors, console_errors
