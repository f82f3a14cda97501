"""The page at ``GET /`` in a real headless Chromium: it loads, has its controls, and its script runs clean.

Slow, and skipped unless Debian's ``chromium`` is installed at /usr/bin/chromium (never installed by tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.serving.conftest import write_tone
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


# Driving the page (upload, wait for the table and the timeline, screenshot) needs Playwright's driver, which no
# Python package of the project ships: point AST_SAMPLEID_PLAYWRIGHT at a node_modules folder holding
# playwright-core (`npm install playwright-core` anywhere). It uses Debian's chromium, never a downloaded one.
PLAYWRIGHT = os.environ.get("AST_SAMPLEID_PLAYWRIGHT", "")
UPLOAD_SCRIPT = """
const { chromium } = require('playwright-core');
(async () => {
  const [url, song, shot] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'] });
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(url);
  await page.setInputFiles('#file', song);
  await page.click('#submit');
  await page.waitForSelector('#rows tr', { timeout: 20000 });
  await page.waitForSelector('#timeline', { state: 'visible', timeout: 20000 });
  await page.screenshot({ path: shot });
  console.log(JSON.stringify({ rows: await page.locator('#rows tr').count(),
                               status: await page.locator('#status').innerText() }));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(not (Path(PLAYWRIGHT) / "playwright-core").is_dir() or shutil.which("node") is None,
                    reason="needs node and AST_SAMPLEID_PLAYWRIGHT=<node_modules with playwright-core>")
def test_page_uploads_a_song_and_shows_matches_and_timeline(fake_model: Path, tmp_path: Path) -> None:
    song = write_tone(tmp_path / "song.flac", 6.0)
    script = tmp_path / "upload.js"
    script.write_text(UPLOAD_SCRIPT)
    shot = tmp_path / "page.png"
    with running(fake_model) as srv:
        proc = subprocess.run(["node", str(script), f"{srv.url}/", str(song), str(shot)], capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, "NODE_PATH": PLAYWRIGHT})
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["rows"] >= 1 and "song.flac" in seen["status"]
    assert shot.stat().st_size > 0
