"""The documentation's screenshots, from a command: docs/report.png (a `vidtune demo` run's report.html)
and docs/app.png (the app after a synthetic walk on the demo model, its defaults).

    python bench/screenshots.py [--run runs/demo] [--only report|app]

Needs Debian's chromium (apt-get install chromium) and playwright (in the test extra). The report is
taken at 1,000 px wide, the app at 1,280; both are cut at 2,400 px high (the page's top: what a reader
sees first), so they stay readable at page width (tests/test_docs.py checks the sizes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MAX_HEIGHT = 2400


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("no chromium: apt-get install chromium")
    return path


def shoot(page, out: Path) -> Path:
    """A full-page screenshot of ``page``, cut at MAX_HEIGHT."""
    height = min(MAX_HEIGHT, int(page.evaluate("document.documentElement.scrollHeight")))
    width = int(page.viewport_size["width"])
    page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height})
    return out


def report_png(run: Path, out: Path) -> Path:
    """docs/report.png: the demo run's report.html at 1,000 px (runs `vidtune demo` first when missing)."""
    from playwright import sync_api

    if not (run / "report.html").is_file():
        from vidtune.demo.command import run_demo

        run_demo(out=str(run))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1200})
        page.goto((run / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        shoot(page, out)
        browser.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_png(out: Path) -> Path:
    """docs/app.png: `vidtune serve` (the demo model), Run with its defaults (a synthetic walk), the result."""
    from playwright import sync_api

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="vidtune-app-") as work:  # the page names the folder as given: runs/app
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
        cmd = [sys.executable, "-m", "vidtune.cli", "serve", "--port", str(port), "--runs", "runs/app"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=work)
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(180):
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except OSError:
                    time.sleep(0.5)
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.locator("#run").click()
                page.wait_for_selector("#final-video video[src]", timeout=600_000)
                page.wait_for_selector("#strip img", timeout=60_000)
                page.evaluate("window.scrollTo(0, 0)")
                shoot(page, out)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="a `vidtune demo` run folder")
    parser.add_argument("--only", choices=("report", "app"), help="take one screenshot only")
    args = parser.parse_args(argv)
    if args.only in (None, "report"):
        print(report_png(args.run, ROOT / "docs" / "report.png"))
    if args.only in (None, "app"):
        print(app_png(ROOT / "docs" / "app.png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
