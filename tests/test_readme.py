"""The README and docs/*.md say what the code does.

- The README's Python example runs as written, on the embedded demo model, in a fresh folder that holds
  what the README's set-up command (`vidtune demo`) leaves there: runs/demo/source/poses.
- The README is a short page that opens with its picture, and names the command that redraws it.
- Every `vidtune` command in a shell block parses with the real argument parser (its `--set` overrides
  with the real config), every repository path a command names exists, every TOML block loads as a config.
- Every default written `section.key = value` outside the code blocks, and the defaults table of
  docs/method.md, match the config dataclasses (src/vidtune/config.py) and the demo presets; every
  `section.key=value` override written there applies.
- Every relative link resolves, anchors included.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 170
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
SPAN = re.compile(r"`([^`\n]+)`")
DEFAULT = re.compile(r"^([a-z_]+)\.([a-z_]+) = (.+)$")  # a stated default: `codenoise.strength = 0.4`
OVERRIDE = re.compile(r"^(?:--set )?([a-z_]+\.[a-z_]+=\S+)$")  # a setting: `--set codenoise.mode=overlap`
LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"^(?:bench|tests|src|docs)/\S+$")


def blocks(page: Path, lang: str) -> list[str]:
    return [body for tag, body in FENCE.findall(page.read_text()) if tag == lang]


def prose(page: Path) -> str:
    """The page without its fenced code blocks."""
    return FENCE.sub("", page.read_text())


def python_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Python API\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def shell_commands(page: Path) -> list[list[str]]:
    """Every command of the page's bash blocks, as words (continuation lines joined, comments dropped)."""
    commands = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words:
                    commands.append(words)
    return commands


def toml_value(text: str) -> Any:
    return tomllib.loads(f"v = {text}")["v"]


def config_value(cfg, section: str, key: str) -> Any:
    assert hasattr(cfg, section), f"no config section [{section}] (sections: {', '.join(vars(cfg))})"
    assert hasattr(getattr(cfg, section), key), f"no config key {section}.{key}"
    return getattr(getattr(cfg, section), key)


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from vidtune.demo.command import DEFAULT_PROMPT, write_source

    write_source(tmp_path / "runs" / "demo", "walk", 24, DEFAULT_PROMPT, 0)  # as `vidtune demo` does
    monkeypatch.chdir(tmp_path)
    example = python_blocks()[0]
    example = example.replace("sampling.steps=10", "sampling.steps=4")  # the same calls, fewer steps on the CPU
    scope: dict = {}
    exec(compile(example, "README.md (Python)", "exec"), scope)
    out, final = scope["out"], scope["final"]
    assert out.frames.shape == (24, 64, 64, 3)
    assert out.stages[1].frames.shape == (24, 64, 64, 3)
    assert final.frames.shape == (24, 64, 64, 3) and final.info["unet"] == "tuned"


def test_the_real_model_example_names_the_api_of_the_issue():
    real = python_blocks()[1]
    assert 'VidtunePipeline.from_pretrained("CompVis/stable-diffusion-v1-4"' in real
    assert "torch_dtype=torch.float16" in real and "run_dir=" in real


def test_the_readme_is_a_short_page_that_opens_with_its_picture():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    pictures = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert pictures and pictures[0] < 10, "README.md must show its picture within its first 10 lines"
    picture = ROOT / LINK.search(lines[pictures[0]]).group(1)
    assert picture.is_file() and picture.stat().st_size < 300_000
    assert "python bench/readme_strip.py" in README.read_text()  # the command that redraws it


def test_the_readme_set_up_commands_are_those_ci_runs():
    text, ci = README.read_text(), (ROOT / ".ci" / "run").read_text()
    install = 'python3.11 -m venv .venv && .venv/bin/pip install -e ".[test]"'
    assert f"{install} && .venv/bin/vidtune demo\n" in text and install in ci
    assert "\n.venv/bin/pytest\n" in text and "\n.venv/bin/pytest\n" in ci


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_vidtune_command_parses(page):
    from vidtune import config as C
    from vidtune.cli import make_parser

    commands = shell_commands(page)
    for words in commands:
        for word in words:
            if REPO_PATH.match(word):
                assert (ROOT / word).exists(), f"{page.name}: `{shlex.join(words)}` names {word}, which is missing"
        starts = [i for i, w in enumerate(words) if Path(w).name == "vidtune"]
        if not starts:
            continue
        argv = words[starts[0] + 1 :]
        try:
            args = make_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}: `vidtune {shlex.join(argv)}` does not parse")
        C.apply_overrides(C.RunConfig(), getattr(args, "overrides", []))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_toml_block_is_a_valid_config(page):
    from vidtune import config as C

    for block in blocks(page, "toml"):
        C.from_dict(tomllib.loads(block), source=f"{page.name} (TOML)")


def test_every_stated_default_is_the_code_default_and_every_setting_applies():
    from vidtune import config as C

    defaults = C.RunConfig()
    stated = 0
    for page in PAGES:
        for span in SPAN.findall(prose(page)):
            if m := DEFAULT.match(span):
                section, key, value = m.groups()
                want = config_value(defaults, section, key)
                assert toml_value(value) == want, f"{page.name}: `{span}`, but the default is {want!r}"
                stated += 1
            elif m := OVERRIDE.match(span):
                C.apply_overrides(defaults, [m.group(1)])
    assert stated >= 20  # the pages do state their defaults this way


def test_the_defaults_table_matches_the_config_and_the_demo_presets():
    from vidtune import config as C
    from vidtune.model_choice import DEMO_MODEL, model_presets

    defaults = C.RunConfig()
    presets = C.apply_overrides(defaults, model_presets(DEMO_MODEL))
    text = (ROOT / "docs" / "method.md").read_text()
    table = text[text.index("| setting | default | demo preset |") :].split("\n\n")[0]
    rows = [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert len(rows) >= 15
    for setting, default, preset, _why in rows:
        section, key = setting.split(".")
        assert toml_value(default) == config_value(defaults, section, key), f"docs/method.md: {setting} default"
        want = toml_value(default if preset == "-" else preset)
        assert config_value(presets, section, key) == want, f"docs/method.md: {setting} demo preset"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in LINK.findall(prose(page)):
        if "://" in target:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link {target} points at nothing"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", prose(dest), flags=re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{page.name}: link {target}: no heading #{anchor} in {dest.name}"


def test_the_readme_strip_script_draws_a_run_folder(tmp_path):
    from vidtune.video import write_frames_png

    spec = importlib.util.spec_from_file_location("bench_readme_strip", ROOT / "bench" / "readme_strip.py")
    strip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(strip)
    run = tmp_path / "run"
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    for _, rel in strip.ROWS:
        write_frames_png(frames, run / rel)
    out = strip.write_strip(run, tmp_path / "strip.png", frames=3)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


README_ROWS = {  # the README's results table: row name -> the benchmark's variant
    "SD frame by frame": "per_frame",
    "frame by frame, one shared noise": "per_frame_shared_noise",
    "Text2Video-Zero": "t2v_zero",
    "Gen-L-Video": "gen_l_video",
    "stages 1-2 (fusion only)": "stages_1_2",
    "vidtune (four stages)": "full",
    "ground truth": "ground_truth",
}


def test_the_readme_results_are_the_committed_benchmarks_with_the_honest_row():
    """Every row of the README's table (the fusion-only row included) is the committed benchmark's mean."""
    text = README.read_text()
    table = text[text.index("| variant | flicker | background flicker | identity | pose IoU |") :].split("\n\n")[0]
    shown = {}
    for line in table.splitlines()[2:]:
        name, *cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        shown[name] = [float(c) for c in cells]
    assert set(shown) == set(README_ROWS)
    bench = (ROOT / "bench" / "results" / "benchmark.md").read_text()
    head = "| variant | flicker | flicker bg |"
    rows = bench[bench.index(head) :].split("\n\n")[0].splitlines()
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    columns = [header.index(k) for k in ("flicker", "flicker bg", "identity.consistency", "pose adh. pose_iou")]
    means = {}
    for line in rows[3:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        means[cells[0]] = [float(cells[i].split(" [")[0]) for i in columns]
    for name, variant in README_ROWS.items():
        assert shown[name] == pytest.approx(means[variant], rel=0.01, abs=0.006), name
