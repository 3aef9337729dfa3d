"""The local app: its job logic, and end to end in a real headless browser.

The browser test starts `vidtune serve` on 127.0.0.1 (a free port), uploads a zip of OpenPose JSON
(a synthetic walk), runs the demo model with few steps, waits for the video and checks the page
shows it. Playwright drives Debian's chromium (`apt-get install chromium`, done by .ci/run);
Playwright's own browser download cannot work offline.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vidtune.app import jobs as app_jobs
from vidtune.errors import VidtuneError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("VIDTUNE_SCREENSHOTS")  # a folder: save the page's screenshots there


def test_prompt_schedule_and_settings_are_checked():
    assert app_jobs.parse_prompt_schedule("a red figure walking") == ("a red figure walking", {})
    first, schedule = app_jobs.parse_prompt_schedule("0: a red figure walking\n8: a blue figure walking")
    assert first == "a red figure walking" and schedule == {"0": "a red figure walking", "8": "a blue figure walking"}
    with pytest.raises(VidtuneError, match="FIRST_FRAME"):
        app_jobs.parse_prompt_schedule("0: a\nno number here")
    with pytest.raises(VidtuneError, match="frame 0"):
        app_jobs.parse_prompt_schedule("4: a red figure")
    with pytest.raises(VidtuneError, match="steps = 0"):
        app_jobs.job_overrides(app_jobs.JobRequest(steps=0))


def test_a_job_runs_on_the_apps_model_with_that_models_presets(tmp_path, tiny_model_dir):
    from vidtune.model_choice import DEMO_MODEL

    req = app_jobs.JobRequest(steps=7, frames=12, trainable="attention")
    cfg = app_jobs.job_config(req, tmp_path, "poses/x")
    assert cfg.model.path == str(DEMO_MODEL) and cfg.model.adapter == "" and cfg.inputs.height == 64  # presets
    assert (cfg.sampling.steps, cfg.inputs.frames, cfg.tuning.trainable) == (7, 12, "attention")  # the form
    assert cfg.inputs.poses == "poses/x" and cfg.inputs.prompt == req.prompt
    other = app_jobs.job_config(app_jobs.JobRequest(model=str(tiny_model_dir)), tmp_path, "poses/x")
    assert other.model.path == str(tiny_model_dir) and other.inputs.height == 512  # no demo presets there


def test_bad_uploads_give_one_line_messages(tmp_path):
    bad_zip = tmp_path / "poses.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(VidtuneError, match="not a valid zip"):
        app_jobs.place_upload(bad_zip, tmp_path / "run1")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(VidtuneError, match="no \\*_keypoints.json"):
        app_jobs.place_upload(empty, tmp_path / "run2")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(VidtuneError, match="unsupported upload"):
        app_jobs.place_upload(other, tmp_path / "run3")


def test_progress_line_reads_live_tqdm_bars():
    from tqdm import tqdm

    with tqdm(total=10, desc="stage 1: denoise", disable=False, file=open(os.devnull, "w")) as bar:
        bar.update(4)
        bars = [b for b in app_jobs.live_bars() if b["desc"] == "stage 1: denoise"]
        assert bars and bars[0]["n"] == 4 and bars[0]["total"] == 10
        line = app_jobs.progress_line(bars, ["vidtune: poses walk: 8 frames"], time.perf_counter())
    assert "stage 1: denoise" in line and "4/10" in line and "poses walk" in line


def openpose_zip(path: Path, frames: int = 8) -> Path:
    """A zip of OpenPose COCO-18 JSON: a synthetic walk on a 256x256 canvas."""
    from vidtune.demo.synthetic.world import make_sequence
    from vidtune.pose_extract import openpose_record

    seq = make_sequence(
        "walk", frames, "a red figure walking on a snowy field during the day", seed=7, height=256, width=256
    )
    with zipfile.ZipFile(path, "w") as zf:
        for i, kp in enumerate(seq.keypoints.astype(np.float32)):
            zf.writestr(f"walk/walk_{i:012d}_keypoints.json", json.dumps(openpose_record(kp[None])))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"vidtune serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"vidtune serve did not answer at {url} within {timeout:.0f} s")


@pytest.fixture
def server(tmp_path):
    """`vidtune serve` in a subprocess on a free local port; yields (url, runs folder)."""
    port = _free_port()
    runs = tmp_path / "runs"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidtune.cli", "serve", "--port", str(port), "--runs", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, timeout=90)
        yield url, runs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium); .ci/run installs it")
@pytest.mark.skipif(
    importlib.util.find_spec("gradio") is None or importlib.util.find_spec("playwright") is None,
    reason="gradio or playwright not installed: pip install -e '.[test]' installs both",
)
@pytest.mark.slow
def test_app_in_a_headless_browser_runs_an_upload_and_shows_the_video(server, tmp_path):
    from playwright import sync_api

    url, runs = server
    upload = openpose_zip(tmp_path / "walk_openpose.zip")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.locator("#upload input[type=file]").set_input_files(str(upload))
        page.wait_for_selector("#upload a[href]", timeout=30_000)  # the upload reached the server
        for field, value in (("frames", "8"), ("steps", "4"), ("tuning_steps", "4")):
            box = page.locator(f"#{field} input")
            box.fill(value)
            box.press("Tab")
        page.locator("#run").click()
        page.wait_for_function("document.querySelector('#status').innerText.includes('Running')", timeout=60_000)
        running = page.locator("#status").inner_text()
        # Gradio's progress bar names the stage working now (the stages' tqdm bars, `server.show_progress`)
        page.wait_for_function(
            "[...document.querySelectorAll('#progress .progress-level-inner')].some(e => /stage [1-4]/.test(e.innerText))"
            " && document.querySelector('#progress .progress-bar') !== null",
            timeout=120_000,
        )
        if SCREENSHOTS:
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(Path(SCREENSHOTS) / "app_running.png"))
        page.wait_for_selector("#final-video video[src]", timeout=240_000)
        status = page.locator("#status").inner_text()
        assert "Done" in status, status
        assert "Problem" not in status and "upload walk_openpose.zip" in running
        src = page.locator("#final-video video").get_attribute("src")
        assert src and ".mp4" in src
        ready = page.wait_for_function(
            "(() => { const v = document.querySelector('#final-video video'); return v && v.readyState >= 1 && v.videoWidth > 0; })()",
            timeout=30_000,
        )
        assert ready
        assert page.locator("#side-by-side video[src]").count() == 1
        assert page.locator("#flicker img").count() == 1
        table = page.locator("#metrics").inner_text()
        assert "warping error x1e3" in table and "background flicker" not in table  # an upload has no masks
        assert not any(cell.strip() == "0" for cell in table.split())  # no value rounded away
        if SCREENSHOTS:
            page.screenshot(path=str(Path(SCREENSHOTS) / "app.png"), full_page=True)
        # a bad upload (on a fresh page): a message in the page, no stack trace
        page.goto(url)
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"not a zip")
        page.locator("#upload input[type=file]").set_input_files(str(bad))
        page.wait_for_selector("#upload a[href]", timeout=30_000)
        page.locator("#run").click()
        page.wait_for_function(
            "document.querySelector('#status').innerText.includes('not a valid zip')", timeout=60_000
        )
        failed = page.locator("#status").inner_text().strip()
        assert failed.startswith("Problem:") and "\n" not in failed, failed  # the error line, one line
        assert "Traceback" not in page.content()
        browser.close()
    made = [p for p in runs.iterdir() if (p / "final.mp4").is_file()]
    assert len(made) == 1 and (made[0] / "report.html").is_file() and (made[0] / "stage4" / "done.json").is_file()
    assert (made[0] / "source" / "upload" / "walk").is_dir()  # the run used the upload


def test_metrics_table_scales_small_values_and_hides_empty_columns():
    from vidtune.app.server import metrics_table

    metrics = {
        "stage1": {"flicker": {"mean_abs_diff": 5.5123, "mean_abs_diff_bg": 1.2}, "warp_err_dis": {"all": 2.42e-4}},
        "final": {"flicker": {"mean_abs_diff": 2.0, "mean_abs_diff_bg": None}, "warp_err_dis": {"all": 3.1e-7}},
    }
    table = metrics_table(metrics)
    assert table["headers"] == ["video", "flicker |dI| (0-255)", "background flicker (0-255)", "warping error x1e3"]
    assert table["data"][0] == ["stage1", "5.51", "1.2", "0.242"]
    assert table["data"][1] == ["final", "2", "-", "0.00031"]  # small, never shown as 0


def test_the_done_line_names_run_folders_as_the_user_would_type_them(tmp_path, monkeypatch):
    """Paths under the folder `vidtune serve` started in are shown relative to it; others stay absolute."""
    from vidtune.app.server import relative_to_cwd

    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    text = f"`{here}/runs/app/20261207-walk` -> {here}/runs/app/20261207-walk/final.mp4, /elsewhere/x.mp4"
    assert relative_to_cwd(text) == "`runs/app/20261207-walk` -> runs/app/20261207-walk/final.mp4, /elsewhere/x.mp4"
