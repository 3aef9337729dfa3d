"""Config: defaults, strict TOML loading, overrides, round trip, stage hashes."""

import tomllib
from dataclasses import replace

import pytest

from vidtune import config as C
from vidtune.errors import VidtuneError


def test_paper_defaults_are_written_out():
    cfg = C.RunConfig()
    assert (cfg.sampling.beta_start, cfg.sampling.beta_end) == (0.00085, 0.012)
    assert cfg.sampling.beta_schedule == "scaled_linear" and cfg.sampling.num_train_timesteps == 1000
    assert (cfg.sampling.scheduler, cfg.sampling.steps, cfg.sampling.eta, cfg.sampling.guidance) == (
        "ddim",
        50,
        0.0,
        7.5,
    )
    assert cfg.separate.fusion_step == 0.5 and cfg.tuning.lr == 5e-6 and cfg.tuning.trainable == "full"
    text = C.to_toml(cfg)
    data = tomllib.loads(text)
    for section, values in C.to_dict(cfg).items():
        assert set(data[section]) == set(values)  # every field written out


def test_round_trip_through_toml(tmp_path):
    cfg = C.RunConfig()
    cfg = replace(
        cfg,
        inputs=replace(
            cfg.inputs, prompt='a "quoted" prompt', prompts={"0": "a", "8": "b"}, clip_prompts=["x", "y"], fps=12.5
        ),
        tuning=replace(cfg.tuning, lr=1e-4, trainable="lora"),
    )
    path = tmp_path / "c.toml"
    path.write_text(C.to_toml(cfg))
    assert C.load(path) == cfg


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[sampling]\nstep = 20\n")
    with pytest.raises(VidtuneError, match=r"sampling\.step.*valid keys.*steps") as err:
        C.load(path)
    assert str(path) in str(err.value)
    path.write_text("[samplin]\nsteps = 20\n")
    with pytest.raises(VidtuneError, match="unknown section"):
        C.load(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[sampling]\nsteps = 'many'\n", "sampling.steps must be int"),
        ("[sampling]\nguidance = true\n", "sampling.guidance must be float"),
        ("[fusion]\nspace = 'pixels'\n", "fusion.space = 'pixels' is not one of x0, latent"),
        ("[inputs]\nprompts = {0 = 1}\n", "inputs.prompts must be dict"),
        ("[sampling\n", "not valid TOML"),
    ],
)
def test_wrong_types_and_values(tmp_path, text, match):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(VidtuneError, match=match):
        C.load(path)


def test_overrides_parse_by_field_type():
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            "sampling.steps=20",
            "inputs.prompt=a man dancing",
            "fusion.learn=true",
            "tuning.lr=1e-4",
            'inputs.prompts={"0"="a"}',
        ],
    )
    assert cfg.sampling.steps == 20 and cfg.inputs.prompt == "a man dancing" and cfg.fusion.learn is True
    assert cfg.tuning.lr == 1e-4 and cfg.inputs.prompts == {"0": "a"}
    with pytest.raises(VidtuneError, match="unknown key sampling.stepz"):
        C.apply_overrides(C.RunConfig(), ["sampling.stepz=3"])
    with pytest.raises(VidtuneError, match="expected section.key=value"):
        C.apply_overrides(C.RunConfig(), ["steps"])
    with pytest.raises(VidtuneError, match="sampling.steps must be int"):
        C.apply_overrides(C.RunConfig(), ["sampling.steps=abc"])


def test_stage_hash_depends_on_own_and_earlier_sections_only():
    base = C.RunConfig()
    lr = C.apply_overrides(base, ["tuning.lr=1e-4"])
    assert [C.stage_hash(base, k) == C.stage_hash(lr, k) for k in (1, 2, 3, 4)] == [True, True, False, False]
    steps = C.apply_overrides(base, ["sampling.steps=20"])
    assert all(C.stage_hash(base, k) != C.stage_hash(steps, k) for k in (1, 2, 3, 4))
    clip = C.apply_overrides(base, ["codenoise.stride=4"])
    assert [C.stage_hash(base, k) == C.stage_hash(clip, k) for k in (1, 2, 3, 4)] == [True, True, True, False]


def test_a_run_folders_config_is_portable_and_loads_back_to_the_same_run(tmp_path):
    from vidtune.model_choice import DEMO_MODEL

    (tmp_path / "poses").mkdir()
    (tmp_path / "sam").mkdir()
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    cfg = C.RunConfig()
    cfg = replace(
        cfg,
        inputs=replace(cfg.inputs, poses=str(tmp_path / "poses")),
        model=replace(cfg.model, path=str(DEMO_MODEL), sam=str(tmp_path / "sam")),
    )
    kept = C.portable(cfg, run)
    assert kept.model.path == "demo" and kept.inputs.poses == "../../poses" and kept.model.sam == "../../sam"
    assert kept.model.adapter == cfg.model.adapter  # a hub id stays as it is
    (run / "config.toml").write_text(C.to_toml(kept))
    back = C.load(run / "config.toml")
    assert back.inputs.poses == str((tmp_path / "poses").resolve()) and back.model.sam == str(
        (tmp_path / "sam").resolve()
    )
    assert back.model.path == "demo"  # resolved where a model string is: vidtune.model_choice
