"""`vidtune serve`: the local web app (Gradio), a thin page over `vidtune.app.jobs`.

Upload a pose source (a zip of OpenPose JSON or pose images, a pose video, an RGB video of a
person) or pick a synthetic motion; write a prompt or a prompt schedule; set the main settings
(their defaults are the demo presets); Run shows live progress, then the side-by-side video, the
final video, the metrics and the plots. Past runs under `--runs` are listed and can be reopened;
each is a normal run folder. One job runs at a time (the queue's concurrency is 1; others wait).
Bad input shows a one-line message in the page, never a stack trace.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vidtune.app import jobs as app_jobs
from vidtune.errors import VidtuneError

MOTIONS = ("walk", "run", "wave", "jump", "dance", "squat", "turn")
ATTENTIONS = ("none", "first", "sparse-causal", "middle", "global")
TRAINABLE = ("full", "lora", "attention")
POLL_SECONDS = 0.5
log = logging.getLogger("vidtune.app")


def _gradio():
    try:
        import gradio as gr
    except ImportError as exc:
        raise VidtuneError(f'the app needs Gradio ({exc}); install it with: pip install "vidtune[app]"') from None
    return gr


def _defaults(model: str = "demo") -> dict:
    """The form's defaults: the model's presets (with fewer frames than the CLI demo, for a quick first run)."""
    from vidtune.demo import command as demo
    from vidtune.model_choice import run_config

    cfg = run_config([[f"model.path={model}"]])
    return {
        "steps": cfg.sampling.steps,
        "clip_length": cfg.codenoise.clip_length,
        "stride": cfg.codenoise.stride,
        "attention": cfg.codenoise.attention,
        "trainable": cfg.tuning.trainable,
        "tuning_steps": cfg.tuning.steps,
        "frames": 16,
        "prompt": demo.DEFAULT_PROMPT,
    }


def _message(exc: BaseException) -> str:
    """A readable one-line message for the page (a user error as it is; anything else named and logged)."""
    if isinstance(exc, VidtuneError):
        return f"**Problem:** {exc}"
    log.error("run failed:\n%s", "".join(traceback.format_exception(exc)))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"**Problem:** the run failed: {type(exc).__name__}{': ' + first if first else ''} (details in the server's console)"


# The metrics table's columns: (metric.key, header, scale). |dI| is in grey levels (0-255); the warping
# error is a mean squared error of [0, 1] pixels (about 1e-3), shown x1e3 as the benchmark tables do.
TABLE_COLUMNS: tuple[tuple[str, str, float], ...] = (
    ("flicker.mean_abs_diff", "flicker |dI| (0-255)", 1.0),
    ("flicker.mean_abs_diff_bg", "background flicker (0-255)", 1.0),
    ("warp_err_dis.all", "warping error x1e3", 1e3),
    ("drift_bg.mean", "background drift (0-255)", 1.0),
    ("motion_epe.epe", "motion EPE (px)", 1.0),
)


BLANK_TABLE = {"headers": ["video"], "data": []}


def _number(value: float) -> str:
    """Three significant digits, never rounded to 0: 2.43, 0.0421, 1.2e-05."""
    if value == 0:
        return "0"
    return f"{value:.3g}"


def metrics_table(metrics: dict[str, dict]) -> dict:
    """The page's metrics table (Gradio Dataframe value): a row per video, a column per metric in
    `TABLE_COLUMNS` that at least one video has (an upload without ground truth has no motion EPE),
    values scaled and written with three significant digits."""

    def value(m: dict, dotted: str) -> float | None:
        name, key = dotted.split(".")
        v = m.get(name, {}).get(key) if isinstance(m.get(name), dict) else None
        return float(v) if isinstance(v, (int, float)) else None

    shown = [c for c in TABLE_COLUMNS if any(value(m, c[0]) is not None for m in metrics.values())]
    rows = []
    for video, m in metrics.items():
        cells = [value(m, key) for key, _, _ in shown]
        rows.append([video] + ["-" if v is None else _number(v * scale) for v, (_, _, scale) in zip(cells, shown)])
    return {"headers": ["video"] + [header for _, header, _ in shown], "data": rows}


def _outputs(result: app_jobs.JobResult, status: str) -> tuple:
    """The values of the result components, in `OUTPUT_ORDER`."""
    plots = result.plots
    return (
        status,
        _path(result.side_by_side),
        _path(result.final),
        metrics_table(result.metrics),
        _path(plots.get("flicker")),
        _path(plots.get("metrics")),
        _path(plots.get("strip")),
        _path(result.report),
    )


def show_progress(progress, bars: list[dict]) -> None:
    """Gradio's progress bar for the stage working now (the innermost live tqdm bar with a total)."""
    live = [b for b in bars if b["total"]]
    if live:
        bar = live[-1]
        progress((bar["n"], int(bar["total"])), desc=bar["desc"] or "working", unit="steps")


def _path(p: Path | None) -> str | None:
    return None if p is None else str(p)


def relative_to_cwd(text: str) -> str:
    """``text`` with the paths under the folder the app was started in written relative to it (what a user
    typed, `runs/app/...`, not the absolute path)."""
    return text.replace(str(Path.cwd().resolve()) + os.sep, "")


def build(runs: str | Path = "runs/app", model: str = "demo"):
    """The Gradio Blocks of the app (not launched); its jobs run on ``model`` (a model string)."""
    gr = _gradio()
    runs_dir = Path(runs).resolve()
    which = "the embedded demo model" if model == "demo" else f"`{model}`"
    empty = (None, None, BLANK_TABLE, None, None, None, None)  # the outputs after the status, cleared

    with gr.Blocks(title="vidtune") as blocks:
        gr.Markdown(
            "# vidtune\nPose-guided video with the four stages (separate tuning, average fusion, "
            f"combined tuning, co-denoising) on {which}. Every run is a normal run folder "
            f"under `{runs}` (as given to `vidtune serve --runs`): `vidtune run <run>/config.toml --out <run>` resumes it."
        )
        with gr.Row():
            with gr.Column(scale=1):
                form = _form(gr, _defaults(model), runs_dir)
            with gr.Column(scale=2):
                progress_box, outputs = _results(gr)
        do_refresh = _refresh_handler(gr, runs_dir)
        form["run"].click(
            _run_handler(gr, model, runs_dir, empty),
            [form[k] for k in FORM_FIELDS],
            outputs,
            concurrency_limit=1,
            concurrency_id="device",
            show_progress_on=[progress_box],
        ).then(do_refresh, None, form["past"])
        form["reopen"].click(_open_handler(runs_dir, empty), form["past"], outputs)
        form["refresh"].click(do_refresh, None, form["past"])
    blocks.queue(default_concurrency_limit=1)
    return blocks


# The form's fields, in the order the run handler takes them.
FORM_FIELDS = (
    "motion",
    "upload",
    "prompt",
    "frames",
    "steps",
    "clip_length",
    "stride",
    "attention",
    "trainable",
    "tuning_steps",
)


def _form(gr: Any, d: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """The left column: the pose source, the prompt, the settings, Run, and the past runs."""
    w: dict[str, Any] = {}
    w["upload"] = gr.File(
        label="Pose source: a zip of OpenPose *_keypoints.json or pose images, a pose "
        "video, or an RGB video of a person",
        file_types=[".zip", ".json", ".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv"],
        elem_id="upload",
    )
    w["motion"] = gr.Dropdown(
        list(MOTIONS),
        value="walk",
        elem_id="motion",
        label="...or, with no file, a synthetic motion (it has a ground truth)",
    )
    w["prompt"] = gr.Textbox(
        value=d["prompt"],
        lines=2,
        label="Prompt, or a schedule: lines 'FIRST_FRAME: prompt'",
        elem_id="prompt",
    )
    with gr.Accordion("Settings", open=True):
        w["frames"] = gr.Number(value=d["frames"], precision=0, label="frames", elem_id="frames")
        w["steps"] = gr.Number(value=d["steps"], precision=0, label="sampling steps", elem_id="steps")
        w["clip_length"] = gr.Number(
            value=d["clip_length"], precision=0, label="clip length (stage 4)", elem_id="clip_length"
        )
        w["stride"] = gr.Number(value=d["stride"], precision=0, label="stride (stage 4)", elem_id="stride")
        w["attention"] = gr.Dropdown(list(ATTENTIONS), value=d["attention"], label="cross-frame attention")
        w["trainable"] = gr.Dropdown(list(TRAINABLE), value=d["trainable"], label="tuning mode (stage 3)")
        w["tuning_steps"] = gr.Number(
            value=d["tuning_steps"], precision=0, label="tuning steps (stage 3)", elem_id="tuning_steps"
        )
    w["run"] = gr.Button("Run", variant="primary", elem_id="run")
    with gr.Row():
        w["past"] = gr.Dropdown(app_jobs.list_runs(runs_dir), label="Past runs", elem_id="past", scale=3)
        w["refresh"] = gr.Button("↻", scale=0, min_width=40)
    w["reopen"] = gr.Button("Open run", elem_id="open")
    return w


def _results(gr: Any) -> tuple[Any, list[Any]]:
    """The right column: the progress box, then the status, videos, table, plots and report (the outputs)."""
    # Gradio's progress bar (the stage working now) is drawn over this box, so the status stays readable
    progress_box = gr.HTML('<div style="height: 56px"></div>', elem_id="progress")
    status = gr.Markdown("Ready.", elem_id="status")
    side = gr.Video(
        label="pose | stage 1 | final (| ground truth, for a synthetic motion)",
        elem_id="side-by-side",
        autoplay=True,
        loop=True,
        interactive=False,
    )
    final = gr.Video(label="final video", elem_id="final-video", autoplay=True, loop=True, interactive=False)
    metrics = gr.Dataframe(value=BLANK_TABLE, label="metrics (lower is steadier)", elem_id="metrics", interactive=False)
    flicker = gr.Image(label="flicker per frame pair, every stage", elem_id="flicker", interactive=False)
    bars = gr.Image(label="metrics against the ground truth", elem_id="bars", interactive=False)
    strip = gr.Image(label="frames from each stage", elem_id="strip", interactive=False)
    report = gr.File(label="report.html (self-contained)", elem_id="report", interactive=False)
    return progress_box, [status, side, final, metrics, flicker, bars, strip, report]


def _run_handler(gr: Any, model: str, runs_dir: Path, empty: tuple) -> Callable[..., Any]:
    """Run's handler: checks the form, runs the job in a thread and yields its progress, then the outputs."""

    def do_run(mot, up, text, n, k, m, s, att, tr, ts, progress=gr.Progress()):  # noqa: B008 - Gradio's form
        started = time.perf_counter()
        try:
            req = app_jobs.JobRequest(
                motion=mot,
                upload=_upload_path(up),
                prompt=text or "",
                frames=int(n or 0),
                steps=int(k or 0),
                clip_length=int(m or 0),
                stride=int(s or 0),
                attention=att,
                trainable=tr,
                tuning_steps=int(ts or 0),
                model=model,
            )
            app_jobs.job_overrides(req)  # validate the numbers before any work
            app_jobs.parse_prompt_schedule(req.prompt)
            root = app_jobs.new_run_dir(runs_dir, req)
        except Exception as exc:  # noqa: BLE001 - shown in the page
            yield (_message(exc),) + empty
            return
        lines: list[str] = []
        box: dict = {}
        what = f"upload {Path(req.upload).name}" if req.upload else f"synthetic {req.motion}"

        def work() -> None:
            try:
                box["result"] = app_jobs.run_job(req, root, log=lines.append)
            except BaseException as exc:  # noqa: BLE001 - shown in the page
                box["error"] = exc

        worker = threading.Thread(target=work, name="vidtune-job", daemon=True)
        worker.start()
        while worker.is_alive():
            show_progress(progress, app_jobs.live_bars())
            yield (
                f"Running `{root.name}` ({what}) · " + app_jobs.progress_line(app_jobs.live_bars(), lines, started),
            ) + empty
            worker.join(POLL_SECONDS)
        if "error" in box:
            yield (_message(box["error"]),) + empty
            return
        result = box["result"]
        done = f"**Done** in {time.perf_counter() - started:.0f} s: `{result.root}`\n\n{result.summary}"
        yield _outputs(result, relative_to_cwd(done))

    return do_run


def _open_handler(runs_dir: Path, empty: tuple) -> Callable[[str], Any]:
    """Open run's handler: a past run folder's outputs."""

    def do_open(name):
        try:
            if not name:
                raise VidtuneError("pick a past run first")
            result = app_jobs.open_run(runs_dir / name)
            return _outputs(result, f"Opened `{result.root}`: {result.summary}")
        except Exception as exc:  # noqa: BLE001 - shown in the page
            return (_message(exc),) + empty

    return do_open


def _refresh_handler(gr: Any, runs_dir: Path) -> Callable[[], Any]:
    """The past runs' list, read again."""

    def do_refresh():
        return gr.Dropdown(choices=app_jobs.list_runs(runs_dir))

    return do_refresh


def _upload_path(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    return str(getattr(value, "name", value))


def serve(
    host: str = "127.0.0.1", port: int = 7860, runs: str | Path = "runs/app", block: bool = True, model: str = "demo"
):
    """Start the app on host:port, its jobs on ``model``; with ``block`` False return (app, url) and keep
    serving in the background."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    blocks = build(runs, model)
    Path(runs).mkdir(parents=True, exist_ok=True)
    try:
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=True,
            quiet=not block,
            allowed_paths=[str(Path(runs).resolve())],
            footer_links=[],
            show_error=False,
        )
    except OSError as exc:
        raise VidtuneError(f"cannot serve on {host}:{port} ({exc}); pass another --port") from None
    print(f"vidtune: the app is at {url} (runs in {Path(runs).resolve()}); Ctrl+C stops it", flush=True)
    if not block:
        return blocks, url
    try:
        while True:
            time.sleep(3600)
    finally:
        blocks.close()
