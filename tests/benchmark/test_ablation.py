"""`vidtune ablate` (vidtune.benchmark) end to end on the tiny random model: one short sequence, two steps.

The numbers mean nothing on a random model; what is checked is the wiring: every variant makes a
video of the right length, the base-model variants run on the untouched base UNet and the tuned
ones on stage 3's, the shared components are never modified, the table and the report hold
everything, and the ground truth's static background scores as perfectly still.
"""

import json
import re

import pytest
import torch

from vidtune.benchmark import report, runner, spec
from vidtune.errors import VidtuneError
from vidtune.video import list_image_files, video_info

N = 5

CONFIG = """
[ablation]
frames = {n}

[[sequences]]
name = "wave"
motion = "wave"
prompt = "a red figure waving on a beach at sunset"
seed = 3

[run.model]
path = "{model}"

[run.inputs]
height = 32
width = 32

[run.sampling]
steps = 2
guidance = 3.0

[run.separate]
segmenter = "grabcut"

[run.tuning]
steps = 1
checkpoint_every = 0

[run.codenoise]
clip_length = 3
stride = 2
"""


def _checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum() for p in module.parameters()))


@pytest.fixture(scope="module")
def ablation(tiny_model_dir, tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    cfg = root / "ablation.toml"
    cfg.write_text(CONFIG.format(n=N, model=tiny_model_dir))
    before = _checksum(tiny_components.unet)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and fair to a busy machine
    try:
        out = runner.run_ablation(str(cfg), out=str(root / "out"), progress=False, components=tiny_components)
    finally:
        torch.set_num_threads(threads)
    result = json.loads((out / "ablation.json").read_text())
    return {
        "out": out,
        "result": result,
        "unet_before": before,
        "unet_after": _checksum(tiny_components.unet),
        "components": tiny_components,
        "config": cfg,
    }


@pytest.mark.slow
def test_every_variant_makes_a_video_of_every_frame(ablation):
    outputs = ablation["result"]["outputs"]["wave"]
    assert set(outputs["frames"]) == set(spec.VARIANTS)
    for name, folder in outputs["frames"].items():
        assert len(list_image_files(folder)) == N, name
    assert video_info(outputs["grid"]).num_frames == N
    curves = ablation["result"]["flicker_curves"]["wave"]
    assert all(len(curves[v]) == N - 1 for v in spec.VARIANTS)


@pytest.mark.slow
def test_base_variants_use_the_base_unet_and_tuned_variants_the_tuned_one(ablation):
    seq = ablation["out"] / "sequences" / "wave"
    for v in spec.VARIANTS.values():
        if v.source != "stage4":
            continue
        done = json.loads((seq / v.name / "stage4" / "done.json").read_text())
        assert done["unet"] == v.unet, v.name
        assert (seq / v.name / "stage3").exists() == (v.unet == "tuned"), v.name
    assert (seq / "base" / "stage3" / "done.json").is_file()
    # stage 3 tuned a private copy: the shared components are untouched
    assert ablation["unet_after"] == ablation["unet_before"]
    done = json.loads((seq / "t2v_zero" / "stage4" / "done.json").read_text())
    assert done["clips"] == 1 and done["attention"] == "first"
    done = json.loads((seq / "stages_1_2_3" / "stage4" / "done.json").read_text())
    assert done["clips"] == N and done["attention"] == "none"


def test_table_has_every_variant_and_metric(ablation):
    result = ablation["result"]
    summary = result["summary"]
    short = report.SCHEDULE_METRICS + report.LONG_METRICS  # no schedule, and one clip of drift_long, here
    keys = [k for k, *_ in report.TABLE_METRICS if k not in short]
    for v in spec.VARIANTS.values():
        for key in keys:
            stat = summary[v.name].get(key)  # seam ratio too: a control for the variants without clips
            assert stat is not None and stat["mean"] is not None, (v.name, key)
    windows = result["outputs"]["wave"]["windows"]
    assert all(windows[v] == windows["full"] for v in spec.VARIANTS)  # the same frame pairs for every row
    md = (ablation["out"] / "ablation.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| variant | flicker"))
    for key, title, *_ in report.TABLE_METRICS:
        if key in short:
            continue
        assert f"| {title} |" in header or header.endswith(f"| {title}")
    for name in spec.VARIANTS:
        assert re.search(rf"^\| {name} \| [-0-9]", md, re.M), name
    assert "vidtune ablate" in md and "CPU cores" in md
    # pose and prompt adherence against the synthetic ground truth (vidtune.demo.synthetic.adherence)
    pose = sorted(k for k in summary["ground_truth"] if k.startswith("pose_adherence."))
    prompt = sorted(k for k in summary["ground_truth"] if k.startswith("prompt_adherence."))
    assert pose and prompt
    for v in spec.VARIANTS:
        assert all(summary[v][k]["mean"] is not None for k in pose + prompt), v
    assert pose[0].replace("_adherence.", " adh. ") in header
    gt_iou = summary["ground_truth"][pose[0]]["mean"]
    assert gt_iou > 0.5 and gt_iou == max(summary[v][pose[0]]["mean"] for v in spec.VARIANTS)


def test_ground_truth_background_is_still(ablation):
    gt = ablation["result"]["per_sequence"]["wave"]["ground_truth"]
    # a static scene behind a moving figure: no background change at all
    assert gt["flicker.mean_abs_diff_bg"] == 0.0 and gt["bg_stability.std"] == 0.0 and gt["drift_bg.mean"] == 0.0
    assert gt["flicker.mean_abs_diff"] > 0.0  # the figure moves
    others = ablation["result"]["per_sequence"]["wave"]
    assert gt["flicker.mean_abs_diff_bg"] == min(m["flicker.mean_abs_diff_bg"] for m in others.values())


def test_report_embeds_the_plots_and_videos(ablation):
    out = ablation["out"]
    for name in ("metrics.png", "flicker_curves.png", "ablation.md", "report.html"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert html.count("data:video/mp4;base64,") == 1
    assert "full_global" in html and "ground_truth" in html


@pytest.mark.slow
def test_rerun_resumes_every_stage(ablation):
    seq = ablation["out"] / "sequences" / "wave"
    stamps = {p: p.read_text() for p in seq.glob("*/stage*/done.json")}
    runner.run_ablation(
        str(ablation["config"]), out=str(ablation["out"]), progress=False, components=ablation["components"]
    )
    assert {p: p.read_text() for p in seq.glob("*/stage*/done.json")} == stamps


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[ablation]\nvariants = ["full", "nope"]\n', "unknown variant 'nope'"),
        ('[[sequences]]\nmotion = "fly"\nprompt = "a red figure on a beach at night"\n', "unknown motion 'fly'"),
        ('[[sequences]]\nmotion = "walk"\nprompt = "a cat"\n', "not in the synthetic grammar"),
        ("[ablation]\nframe = 3\n", "unknown key 'frame'"),
        ("[run.sampling]\nstep = 3\n", "sampling.step"),
        ('[[sequences]]\nmotion = "walk"\n', "missing 'prompt'"),
        (
            '[[sequences]]\nmotion = "walk"\nprompts = { "4" = "a red figure walking on a beach at night" }\n',
            "#1: prompts: the schedule starts at frame 4",
        ),
        (
            '[[sequences]]\nmotion = "walk"\nframes = 8\nprompts = { "0" = "a red figure walking on a beach at night", '
            '"9" = "a red figure walking in a desert at night" }\n',
            "starts at frame 9 but the video has only 8 frames",
        ),
        ('[[sequences]]\nmotion = "walk"\nprompts = { "0" = "a cat" }\n', "not in the synthetic grammar"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, fragment):
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(VidtuneError, match=re.escape(fragment)):
        spec.load_spec(path)


def test_a_sequence_can_follow_a_prompt_schedule(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text(
        '[[sequences]]\nmotion = "walk"\nframes = 16\nseed = 7\n'
        'prompts = { "8" = "a red figure walking on a beach at sunset", "0" = "a red figure walking on a snowy field at night" }\n'
    )
    (seq,) = spec.load_spec(path).sequences
    assert seq.schedule == {
        0: "a red figure walking on a snowy field at night",
        8: "a red figure walking on a beach at sunset",
    }
    assert seq.prompt == "a red figure walking on a snowy field at night" and seq.frames == 16


def test_default_spec_has_three_unseen_motions():
    default = spec.load_spec(None)
    assert len({s.motion for s in default.sequences}) >= 3 and all(s.frames >= 16 for s in default.sequences)
    assert len({s.prompt for s in default.sequences}) == len(default.sequences)
    assert default.variants == tuple(spec.VARIANTS)


def test_other_model_weights_start_the_sequences_over(tmp_path, tiny_model_dir):
    fp = runner.model_fingerprint(str(tiny_model_dir))
    assert fp and fp == runner.model_fingerprint(str(tiny_model_dir))
    (tmp_path / "sequences" / "walk").mkdir(parents=True)
    runner.check_model(tmp_path, fp)
    runner.check_model(tmp_path, fp)  # same weights: the runs are kept
    assert (tmp_path / "sequences" / "walk").is_dir()
    runner.check_model(tmp_path, "0" * 16)  # retrained weights at the same path: start over
    assert not (tmp_path / "sequences").exists()


def test_every_variant_has_its_own_colour_and_the_ground_truth_is_grey():
    from vidtune.benchmark.report import GROUND_TRUTH_COLOUR, variant_colours

    names = [f"v{i}" for i in range(12)] + ["ground_truth"]  # the default suite has 11 variants
    colours = variant_colours(names)
    assert colours["ground_truth"] == GROUND_TRUTH_COLOUR
    assert len(set(colours.values())) == len(names) and "C7" not in colours.values()  # tab10's grey


def test_the_published_baselines_run_the_whole_schedule_whatever_the_presets_stage_4():
    """The demo presets give stage 4 a schedule of its own (`codenoise.steps`); the published baselines
    (T2V-Zero, Gen-L-Video, FreeNoise) draw from noise over every sampling step, as their papers do."""
    from vidtune import config as C

    base = C.apply_overrides(C.RunConfig(), ["codenoise.steps=6", "sampling.steps=16"])
    for name in ("t2v_zero", "gen_l_video", "freenoise"):
        cfg = spec.variant_config(base, spec.VARIANTS[name], 24)
        assert C.codenoise_steps(cfg) == 16, name
    assert spec.variant_config(base, spec.VARIANTS["full"], 24).codenoise.steps == 6  # the method keeps its own
