"""The command line itself: every command and option explains itself, and bad input is one line, early.

Fast: nothing here loads a model; the bad-input cases also run in a fresh process to show that
torch is never imported for them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from vidtune import cli
from vidtune.cli import build_config, main, make_parser


def walk(parser: argparse.ArgumentParser, path: str = "vidtune") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the tree, with its command line (`vidtune poses render`), parents first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")


def commands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def has_default(action: argparse.Action) -> bool:
    """Whether the option has a literal default worth naming (not None, False, an empty list)."""
    return action.default not in (None, False, [], argparse.SUPPRESS) and not action.required


def one_line_error(args: list[str], capsys) -> str:
    """Run the CLI in this process: status 2, one line on stderr, no traceback. Returns the line."""
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vidtune: error: ")
    return lines[0]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- help --------------------------------------------------------------------------------------


def test_every_command_and_option_has_help_that_names_its_default():
    missing, no_default = [], []
    for path, parser in walk(make_parser()):
        parser.format_help()  # a bad %-placeholder in any help string fails here
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [f"{path} {name}" for name in action.choices if not helps.get(name)]
                continue
            name = f"{path} {action.option_strings[0] if action.option_strings else action.dest}"
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(name)
            elif has_default(action) and "default" not in action.help:
                no_default.append(name)
    assert not missing, f"no help text: {missing}"
    assert not no_default, f"help does not name the default: {no_default}"


def test_the_walk_covers_every_command():
    paths = {path for path, _ in walk(make_parser())}
    for command in ("run", "plan", "demo", "evaluate", "ablate", "poses render", "poses extract", "serve"):
        assert f"vidtune {command}" in paths
    assert {"vidtune models make-tiny", "vidtune train-demo"} <= paths


def test_top_level_help_lists_every_command_on_its_own_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "{" not in text  # no {run,plan,...} choice list
    for path, parser in walk(make_parser()):
        sub = commands(parser)
        if sub is None:
            continue
        listing = parser.format_help() if path != "vidtune" else text
        for choice in sub._choices_actions:
            lines = [line for line in listing.splitlines() if line.split()[:1] == [choice.dest]]
            assert lines, f"{path} --help does not list {choice.dest}:\n{listing}"
            if len(lines[0].split()) == 1:  # a long name: its help on the next line
                assert listing.splitlines()[listing.splitlines().index(lines[0]) + 1].strip()


def test_help_texts_quote_their_sources():
    """The defaults the help texts state without importing their heavy modules are those modules' own."""
    from vidtune import inputs
    from vidtune.demo import command
    from vidtune.demo.synthetic import MOTIONS
    from vidtune.model_choice import DEMO_MODEL

    assert cli.DEFAULT_FPS == inputs.DEFAULT_FPS
    assert cli.DEMO_PROMPT == command.DEFAULT_PROMPT
    assert cli.DEMO_MOTIONS == tuple(MOTIONS)
    presets = tomllib.loads((Path(DEMO_MODEL) / "vidtune.toml").read_text())
    assert cli.DEMO_STEPS == presets["sampling"]["steps"]


def test_fps_flag_sets_inputs_fps():
    assert build_config(make_parser().parse_args(["run", "--fps", "12"])).inputs.fps == 12.0
    assert build_config(make_parser().parse_args(["plan"])).inputs.fps == 0.0  # the pose source's


# --- bad input: one line naming the option, before anything is loaded or written -----------------


@pytest.mark.parametrize("command", ["run", "demo", "ablate", "train-demo"])
@pytest.mark.parametrize("below", [False, True], ids=["file", "below-a-file"])
def test_out_that_is_a_file_is_one_line(command, below, tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("keep me")
    out = a_file / "run" if below else a_file
    line = one_line_error([command, "--out", str(out)], capsys)
    assert f"--out {out}" in line and "is a file, not a folder" in line and "give a folder path" in line
    assert files_under(tmp_path) == {"taken": b"keep me"}


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
@pytest.mark.parametrize("command", ["run", "plan", "poses render"])
def test_fps_must_be_positive(command, value, tmp_path, capsys):
    args = command.split()
    if command == "poses render":
        args += [str(tmp_path / "poses"), str(tmp_path / "render")]
    else:
        args += ["--out", str(tmp_path / "run")] if command == "run" else []
    line = one_line_error([*args, "--fps", value], capsys)
    assert f"--fps {float(value):g}: frames per second must be a number > 0" in line
    assert "omit it" in line
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value, word", [("-1", "must be >= 0"), ("inf", "not a finite number")])
def test_inputs_fps_in_the_config_is_checked_before_the_run(value, word, tmp_path, capsys):
    line = one_line_error(["run", "--out", str(tmp_path / "run"), "--set", f"inputs.fps={value}"], capsys)
    assert "inputs.fps" in line and word in line
    assert not any(tmp_path.iterdir())


def test_inputs_fps_zero_means_the_pose_sources():
    from vidtune import validate

    validate.check_config(build_config(make_parser().parse_args(["run", "--set", "inputs.fps=0"])))


def test_bad_input_imports_no_torch(tmp_path):
    """In a fresh process, every bad-input case above ends before torch (or any model) is imported."""
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    cases = [
        ["run", "--out", str(a_file)],
        ["demo", "--out", str(a_file / "demo")],
        ["ablate", "--out", str(a_file)],
        ["train-demo", "--out", str(a_file)],
        ["run", "--out", str(tmp_path / "run"), "--fps", "0"],
        ["run", "--out", str(tmp_path / "run"), "--set", "inputs.fps=-2"],
        ["poses", "render", str(tmp_path / "src"), str(tmp_path / "out"), "--fps", "-1"],
    ]
    code = (
        "import sys; from vidtune.cli import main\n"
        f"codes = [main(args) for args in {cases!r}]\n"
        "print(codes, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split("]")[1].strip() == "False", result
    assert result.stdout.startswith(str([2] * len(cases)))
    errors = result.stderr.splitlines()
    assert len(errors) == len(cases) and all(line.startswith("vidtune: error: ") for line in errors), result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]


# --- one meaning for a model string (vidtune.model_choice) ----------------------------------------


def _cfg(*argv: str):
    return build_config(make_parser().parse_args(list(argv)))


def test_model_demo_means_the_embedded_model_with_its_presets_in_run_and_plan(tmp_path):
    from vidtune.model_choice import DEMO_MODEL

    presets = tomllib.loads((Path(DEMO_MODEL) / "vidtune.toml").read_text())
    for command in ("run", "plan"):
        cfg = _cfg(command, "--model", "demo")
        assert cfg.model.path == str(DEMO_MODEL) and cfg.model.adapter == ""  # the folder's own adapter/
        assert cfg.sampling.steps == presets["sampling"]["steps"]
        assert cfg.inputs.height == presets["inputs"]["height"]
    assert _cfg("run", "--model", "demo", "--steps", "3").sampling.steps == 3  # flags over presets
    toml = tmp_path / "run.toml"
    toml.write_text('[sampling]\nsteps = 5\n[model]\npath = "demo"\n')
    assert _cfg("run", str(toml)).sampling.steps == 5  # the file over presets
    assert _cfg("run", str(toml)).model.path == str(DEMO_MODEL)
    assert _cfg("run", "--model", "demo", "--set", "model.adapter=x/y").model.adapter == "x/y"
    assert _cfg("run", "--model", "some/hub-id").model.adapter == "TencentARC/t2iadapter_openpose_sd14v1"


@pytest.mark.slow
def test_run_with_model_demo_works_offline(tmp_path, monkeypatch):
    """`vidtune run --model demo` loads the embedded model, never the hub (HF_HUB_OFFLINE: any hub
    access would fail), and writes the final frames."""
    from vidtune.demo.command import DEFAULT_PROMPT, write_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_source(tmp_path, "walk", 4, DEFAULT_PROMPT, 0)
    argv = ["run", "--model", "demo", "--poses", str(tmp_path / "source" / "poses"), "--prompt", DEFAULT_PROMPT]
    argv += [
        "--steps",
        "3",
        "--clip-length",
        "4",
        "--stride",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--set",
        "tuning.steps=2",
    ]
    assert main(argv) == 0
    assert len(list((tmp_path / "run" / "stage4" / "frames").glob("*.png"))) == 4


def test_version(capsys):
    import vidtune

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"vidtune {vidtune.__version__}"


def test_the_common_flags_set_their_config_keys(tmp_path):
    schedule = tmp_path / "prompts.json"
    schedule.write_text('{"0": "a man walking", "48": "a man running"}')
    cfg = _cfg(
        "run",
        *("--guidance", "4.5", "--negative-prompt", "blurry", "--device", "cpu", "--dtype", "bf16"),
        *("--clip-length", "12", "--stride", "6", "--attention", "first", "--prompts", str(schedule)),
    )
    assert (cfg.sampling.guidance, cfg.inputs.negative_prompt, cfg.model.device, cfg.model.dtype) == (
        4.5,
        "blurry",
        "cpu",
        "bf16",
    )
    assert (cfg.codenoise.clip_length, cfg.codenoise.stride, cfg.codenoise.attention) == (12, 6, "first")
    assert cfg.inputs.prompts == {"0": "a man walking", "48": "a man running"}
    toml = tmp_path / "prompts.toml"
    toml.write_text('0 = "a woman dancing"\n24 = "a woman jumping"\n')
    assert _cfg("plan", "--prompts", str(toml)).inputs.prompts == {"0": "a woman dancing", "24": "a woman jumping"}


@pytest.mark.parametrize(
    "content, name, words",
    [
        (None, "missing.json", "no such file"),
        ("{not json", "p.json", "not valid JSON"),
        ('["a", "b"]', "p.json", "not a table"),
        ('{"first": "a man"}', "p.json", "entry 'first'"),
        ("0 = 3", "p.toml", "entry '0' = 3"),
    ],
)
def test_a_bad_prompt_file_is_one_line(content, name, words, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert main(["plan", "--prompts", str(path)]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--prompts {path}" in err and words in err, err


@pytest.mark.slow
def test_a_run_that_fails_before_any_stage_leaves_no_folder_it_created(tmp_path, capsys):
    empty = tmp_path / "poses"
    empty.mkdir()
    out = tmp_path / "runs" / "new"
    assert main(["run", "--model", "demo", "--poses", str(empty), "--prompt", "a red figure", "--out", str(out)]) != 0
    assert "\n" not in capsys.readouterr().err.strip()
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["run", "--model", "demo", "--poses", str(empty), "--prompt", "a red figure", "--out", str(kept)]) != 0
    assert (kept / "notes.txt").read_text() == "mine"  # a folder that existed is never removed


def test_a_frame_size_off_the_grid_names_the_flag_and_the_nearest_sizes(capsys):
    line = one_line_error(["run", "--height", "100", "--poses", "x", "--prompt", "a man"], capsys)
    assert "inputs.height = 100" in line and "96 or 104" in line and "--height" in line
