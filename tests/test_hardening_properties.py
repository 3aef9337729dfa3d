"""Property tests over mutated real OpenPose JSON and over random TOML configs.

Every generated input either works or gives one `VidtuneError` line; never another exception,
never accepted inputs that make a blank pose map or a schedule that cannot be sampled. They
test the parsing / validation layer (no model runs), so they stay fast.
"""

import json
import math
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidtune import config as C
from vidtune import pipeline, validate
from vidtune.cli import build_config, make_parser
from vidtune.errors import VidtuneError

RAGA3 = "data/openpose/DurhamARC__raga-pose-estimation/example_3people"  # BODY_25, up to 3 people
FRAMES = 6
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_counter = iter(range(10**9))


@pytest.fixture(scope="module")
def real_frames(shared_dir) -> list[tuple[str, dict]]:
    """The first frames of a real multi-person OpenPose sequence: (file name, parsed JSON)."""
    files = sorted((shared_dir / RAGA3).glob("*_keypoints.json"))[:FRAMES]
    return [(f.name, json.loads(f.read_text())) for f in files]


# --- pose JSON ---------------------------------------------------------------------------

ODD_NUMBERS = st.sampled_from([1e30, -1e30, -1.0, 0.0, 1e5, float("nan"), float("inf"), 2.0, 0.5])
MUTATIONS = st.one_of(
    st.tuples(st.just("scale_xy"), ODD_NUMBERS),
    st.tuples(st.just("conf"), ODD_NUMBERS),
    st.tuples(st.just("truncate"), st.integers(0, 80)),
    st.tuples(st.just("replace_list"), st.sampled_from(["x", 3, None, {"a": 1}, [["nested"]], ["1", "2"]])),
    st.tuples(st.just("people"), st.sampled_from([None, [], "nobody", [{}], [{"pose_keypoints_2d": None}]])),
    st.tuples(st.just("garbage"), st.sampled_from(["", "{", "[]", "null", "\x00\xff"])),
)


def mutate(data: dict, kind: str, arg) -> str:
    """Apply one mutation to a frame's JSON; returns the file text."""
    if kind == "garbage":
        return arg
    data = json.loads(json.dumps(data))
    if kind == "people":
        if arg is None:
            data.pop("people", None)
        else:
            data["people"] = arg
        return json.dumps(data)
    for person in data.get("people", []):
        kps = person["pose_keypoints_2d"]
        if kind == "scale_xy":
            person["pose_keypoints_2d"] = [v * arg if i % 3 != 2 else v for i, v in enumerate(kps)]
        elif kind == "conf":
            person["pose_keypoints_2d"] = [arg if i % 3 == 2 else v for i, v in enumerate(kps)]
        elif kind == "truncate":
            person["pose_keypoints_2d"] = kps[:arg]
        elif kind == "replace_list":
            person["pose_keypoints_2d"] = arg
    return json.dumps(data)  # nan / inf become NaN / Infinity, which Python's JSON reads back


def check_inputs(folder: Path, tmp: Path) -> None:
    """build_inputs either gives non-blank pose maps and finite keypoints, or one VidtuneError line."""
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            f"inputs.poses={folder}",
            "inputs.prompt=a person",
            "inputs.height=64",
            "inputs.width=64",
            "inputs.framing=person",
        ],
    )
    try:
        inputs = pipeline.build_inputs(cfg, tmp / "extracted")
    except VidtuneError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    assert inputs.num_frames == FRAMES
    assert inputs.pose_images.any()
    drawn = inputs.keypoints[inputs.keypoints[..., 2] > 0]
    assert np.isfinite(drawn).all()
    # the framing is not ruined by one absurd frame: the drawn joints sit inside the canvas
    inside = (drawn[:, 0] >= -1) & (drawn[:, 0] <= 65) & (drawn[:, 1] >= -1) & (drawn[:, 1] <= 65)
    assert inside.mean() > 0.9


@SETTINGS
@given(frame=st.integers(0, FRAMES - 1), mutation=MUTATIONS, every_frame=st.booleans())
def test_mutated_openpose_json_runs_or_is_one_line_error(real_frames, tmp_path_factory, frame, mutation, every_frame):
    root = tmp_path_factory.mktemp("mutated")
    folder = root / "json"
    folder.mkdir()
    for i, (name, data) in enumerate(real_frames):
        text = mutate(data, *mutation) if (every_frame or i == frame) else json.dumps(data)
        (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    check_inputs(folder, root)
    shutil.rmtree(root)


# --- TOML configs --------------------------------------------------------------------------

VALUES = st.one_of(
    st.integers(-3, 3),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, 2, 4, 8, 16, 50, 1000, 100_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.5, 1e-6, 0.012]),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.text(max_size=3), max_size=2),
)
SECTION_FIELDS = {name: [f.name for f in fields(cls)] for name, cls in C.SECTIONS.items()}
PATHS = {("model", "path"), ("model", "adapter"), ("model", "sam"), ("inputs", "poses")}


@st.composite
def toml_configs(draw) -> dict:
    """A config dict: some sections, some of their keys (now and then an unknown one), random values."""
    data = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTION_FIELDS)), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(SECTION_FIELDS[section] + ["bogus"]), min_size=1, max_size=4, unique=True))
        data[section] = {k: draw(VALUES) for k in keys if (section, k) not in PATHS}
    return data


def toml_text(data: dict) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, float) and math.isnan(value):
                text = "nan"
            elif isinstance(value, float) and math.isinf(value):
                text = "inf" if value > 0 else "-inf"
            else:
                text = C._toml_value(value)
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def schedule_works(cfg: C.RunConfig, base: dict) -> None:
    """An accepted sampling config gives a scheduler that can be set up and stays finite."""
    import torch

    from vidtune.models import make_scheduler
    from vidtune.sampling import fusion_index, prepare_scheduler
    from vidtune.stages.common import build_scheduler

    s = cfg.sampling
    scheduler = build_scheduler(make_scheduler("ddim", base), s)
    timesteps = prepare_scheduler(scheduler, s.steps, "cpu")
    assert len(timesteps) >= 1
    abar = scheduler.alphas_cumprod
    assert torch.isfinite(abar).all() and float(abar.min()) > 0
    assert 0 <= fusion_index(s.steps, cfg.separate.fusion_step) < s.steps


@SETTINGS
@given(data=toml_configs())
def test_random_toml_configs_load_or_are_one_line_errors(tiny_model_dir, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("toml") / "run.toml"
    path.write_text(toml_text(data))
    try:
        cfg = build_config(make_parser().parse_args(["run", str(path)]))
        validate.check_config(cfg)
    except VidtuneError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for section in fields(cfg):
        for f in fields(getattr(cfg, section.name)):
            value = getattr(getattr(cfg, section.name), f.name)
            assert not (isinstance(value, float) and not math.isfinite(value)), (section.name, f.name)
    base = json.loads((Path(tiny_model_dir) / "scheduler" / "scheduler_config.json").read_text())
    schedule_works(cfg, base)
