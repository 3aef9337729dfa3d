"""Stage 3 (combined tuning) on the tiny random model: learning, trainable sets, round trips, resume, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from vidtune import artifacts as A
from vidtune import atomic, tuned_weights
from vidtune.config import RunConfig, TuningConfig
from vidtune.errors import VidtuneError
from vidtune.inputs import VideoInputs
from vidtune.models import load_components
from vidtune.pipeline import run_conditioning, run_stage
from vidtune.results import FusionResult
from vidtune.rundir import RunDir
from vidtune.stages import tuning
from vidtune.stages.common import build_scheduler
from vidtune.testing import make_tiny

FRAMES = 4
LATENT = (4, 8, 8)  # the tiny model: 32 px images, 8 x 8 latents


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One CPU thread: the tiny model trains several times faster on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", with_sam=False)


@pytest.fixture
def components(tiny_dir):
    """Fresh components per test (tuning changes the UNet in place)."""
    return load_components(tiny_dir)


def make_run(root: Path, frames: int = FRAMES, masks: int | None = None) -> tuple[RunDir, VideoInputs]:
    """A run folder with stage 2's fused latents and its masks (a centred box), plus the inputs."""
    g = torch.Generator().manual_seed(0)
    rd = RunDir(root)
    fg = torch.zeros(masks or frames, 1, *LATENT[1:])
    fg[:, :, 2:6, 3:5] = 1.0
    atomic.write_safetensors(rd.stage(2) / "masks.safetensors", {"fg": fg})
    x0 = torch.randn(frames, *LATENT, generator=g)
    atomic.write_safetensors(rd.stage(2) / "latents.safetensors", {"x0": x0, "z_fused": x0.clone()})
    atomic.write_json(rd.stage(2) / "weights.json", {})
    poses = np.random.default_rng(0).integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
    inputs = VideoInputs(
        pose_images=poses, keypoints=None, prompts=["a person dancing on the beach"] * frames, fps=8.0, summary="test"
    )
    return rd, inputs


def load_data(cfg: RunConfig, components, inputs: VideoInputs, rd: RunDir) -> tuning.TuningData:
    """Stage 3's training data from the run folder's stage 2 (as `pipeline` feeds it)."""
    return tuning.load_data(
        FusionResult.load(rd.stage(2), frames=False),
        run_conditioning(cfg, components, inputs),
        inputs.num_frames,
        components.device,
    )


def run3(cfg: RunConfig, components, inputs: VideoInputs, rd: RunDir, progress: bool = False) -> dict:
    """Stage 3 over the run folder through the cache layer; returns what done.json records."""
    return run_stage(3, cfg, components, inputs, rd, progress=progress)


def config(**tuning_fields) -> RunConfig:
    fields = dict(steps=3, lr=1e-3, checkpoint_every=0, seed=0, keep_checkpoints=True) | tuning_fields
    return RunConfig(tuning=TuningConfig(**fields))


@torch.no_grad()
def eps_of(components, rd: RunDir, inputs: VideoInputs) -> torch.Tensor:
    """The UNet's eps on fixed inputs: (FRAMES, 4, 8, 8), conditioned like training."""
    data = load_data(config(), components, inputs, rd)
    z = torch.randn(FRAMES, *LATENT, generator=torch.Generator().manual_seed(1))
    feats = data.features.take(range(FRAMES), z.device, z.dtype)
    return components.unet(
        z,
        torch.tensor([10, 300, 600, 900]),
        encoder_hidden_states=data.prompts.take(range(FRAMES)),
        down_intrablock_additional_residuals=feats,
        return_dict=False,
    )[0]


def state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed_names(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in before if not torch.equal(before[k], after[k])]


# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_goes_down_on_a_fixed_batch(components, tmp_path):
    rd, inputs = make_run(tmp_path)
    cfg = TuningConfig(trainable="full", lr=1e-3, steps=20, batch_size=2)
    data = load_data(RunConfig(tuning=cfg), components, inputs, rd)
    noise = build_scheduler(components.scheduler, replace(RunConfig().sampling, scheduler="ddpm"))
    with tuning.training_mode(components.unet, cfg, components.device):
        loop = tuning.TrainLoop(components.unet, data, noise, cfg, tuning.select_trainable(components.unet, cfg))
        fixed = loop.next_batch()
        loop.next_batch = lambda: fixed
        losses = loop.run_loop()
    print(f"fixed-batch loss: step 1 {losses[0]:.4f} -> step {len(losses)} {losses[-1]:.4f}")
    assert len(losses) == 20
    assert losses[-1] < 0.5 * losses[0]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_attention_set_changes_only_attn_to_q(components, tmp_path):
    rd, inputs = make_run(tmp_path)
    before = state(components.unet)
    info = run3(config(trainable="attention"), components, inputs, rd)
    assert changed_names(before, state(components.unet)) == []  # the stage's scope gave the base weights back
    saved = rd.stage(3) / "unet_attention.safetensors"
    from safetensors.torch import load_file

    tuned = load_file(str(saved))
    assert sorted(tuned) == sorted(k for k in before if tuned_weights.ATTENTION_Q.search(k))
    changed = [k for k, v in tuned.items() if not torch.equal(v, before[k])]
    assert changed, "nothing was trained"
    assert all("to_q" in k and (".attn1." in k or ".attn2." in k) for k in changed), changed
    assert info["trainable"] == "attention" and info["steps"] == 3


def test_full_run_writes_its_files_and_leaves_frozen_parts_alone(components, tmp_path):
    rd, inputs = make_run(tmp_path)
    frozen = {name: state(getattr(components, name)) for name in ("text_encoder", "adapter", "vae")}
    info = run3(config(trainable="full", checkpoint_every=2), components, inputs, rd)
    for name, before in frozen.items():
        assert not changed_names(before, state(getattr(components, name))), name
    s3 = rd.stage(3)
    assert (s3 / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (s3 / "loss.png").stat().st_size > 0
    rows = (s3 / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss" and len(rows) == 1 + 3
    assert sorted(p.name for p in (s3 / "checkpoints").iterdir()) == ["step_000002", "step_000003"]
    assert not components.unet.training and not any(p.requires_grad for p in components.unet.parameters())
    assert info["final_loss"] == pytest.approx(float(rows[-1].split(",")[1]), abs=1e-6)
    print(f"tiny model, full UNet: {info['seconds_per_step'] * 1000:.0f} ms/step")


def test_cross_kv_lora_trains_only_cross_attention_keys_and_values(components, tmp_path):
    rd, inputs = make_run(tmp_path)
    run3(config(trainable="lora", lora_targets="cross_kv"), components, inputs, rd)
    from safetensors.torch import load_file

    saved = load_file(str(rd.stage(3) / A.TUNED_WEIGHTS["lora"]))
    modules = tuned_weights.lora_modules(saved)
    assert modules and all(m.endswith((".attn2.to_k", ".attn2.to_v")) for m in modules), modules
    n_blocks = sum(1 for n, _ in components.unet.named_modules() if n.endswith(".attn2"))
    assert len(modules) == 2 * n_blocks  # every cross-attention's k and v, nothing else
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k), "nothing was trained"


def test_typical_fraction_trains_on_the_most_typical_figures_only(components, tmp_path, monkeypatch):
    rd, inputs = make_run(tmp_path, frames=6)
    x0 = FusionResult.load(rd.stage(2), frames=False).x0
    x0[4, :, 2:6, 3:5] += 5.0  # frame 4's figure looks unlike the others'
    atomic.write_safetensors(rd.stage(2) / "latents.safetensors", {"x0": x0, "z_fused": x0.clone()})
    drawn: list[int] = []
    draw = tuning.TrainLoop.next_batch

    def record(loop):
        batch = draw(loop)
        drawn.extend(batch.frames.tolist())
        return batch

    monkeypatch.setattr(tuning.TrainLoop, "next_batch", record)
    run3(config(trainable="lora", typical_fraction=0.5, batch_size=6, steps=2), components, inputs, rd)
    chosen = json.loads((rd.stage(3) / A.TUNING_INFO).read_text())["train_frames"]
    assert len(chosen) == 3 and 4 not in chosen  # half the frames, never the odd one out
    assert sorted(set(drawn)) == chosen and len(drawn) == 2 * 3  # batches draw from them alone


def test_uncond_prob_trains_that_share_of_samples_on_the_negative_prompt(components, tmp_path):
    """uncond_prob = p: a sample's text embedding is the negative prompt's with probability p (the
    unconditional branch of CFG learns the video too), else its frame's prompt."""
    rd, inputs = make_run(tmp_path)
    seen = {}
    for p in (0.0, 0.3, 1.0):
        cfg = config(trainable="lora", uncond_prob=p, batch_size=FRAMES)
        data = load_data(cfg, components, inputs, rd)
        noise = build_scheduler(components.scheduler, replace(RunConfig().sampling, scheduler="ddpm"))
        params = tuning.select_trainable(components.unet, cfg.tuning)
        loop = tuning.TrainLoop(components.unet, data, noise, cfg.tuning, params)
        draws = [loop.next_batch() for _ in range(500)]
        share = torch.cat([torch.zeros(FRAMES, dtype=torch.bool) if b.uncond is None else b.uncond for b in draws])
        seen[p] = float(share.float().mean())
        contexts: list[torch.Tensor] = []
        loop.model = lambda z_t, t, encoder_hidden_states, log=contexts, **kw: (
            log.append(encoder_hidden_states) or (torch.zeros_like(z_t),)
        )
        loop.loss(draws[0])
        uncond, prompts = data.prompts.uncond.float()[0], data.prompts.take(draws[0].frames).float()
        for row, prompt, is_uncond in zip(contexts[0], prompts, share[:FRAMES], strict=True):
            assert torch.equal(row, uncond if is_uncond else prompt)
        assert not torch.equal(uncond, prompts[0])  # the two embeddings differ, so the check can fail
    assert seen[0.0] == 0.0 and seen[1.0] == 1.0
    assert abs(seen[0.3] - 0.3) < 0.03  # 2000 draws: the share's standard error is 0.01


@pytest.mark.slow
@pytest.mark.parametrize("kind,targets", [("lora", "attention"), ("lora", "cross_kv"), ("full", "attention")])
def test_saved_result_reloads_to_the_same_model(kind, targets, components, tiny_dir, tmp_path):
    rd, inputs = make_run(tmp_path)
    from vidtune.config import stage_config
    from vidtune.results import SaveTo, TuningResult

    base_eps = eps_of(components, rd, inputs)
    cfg = config(trainable=kind, lora_rank=2, lora_targets=targets)
    with components.tuning_unet(kind):  # stage 3's own computation, the UNet still tuned at the end
        s2 = FusionResult.load(rd.stage(2), frames=False)
        result = tuning.run(stage_config(cfg, 3), components, inputs, run_conditioning(cfg, components, inputs), s2)
        tuned_eps = eps_of(components, rd, inputs)
    assert (tuned_eps - base_eps).abs().max() > 1e-4
    torch.testing.assert_close(eps_of(components, rd, inputs), base_eps, atol=0, rtol=0)  # base again
    with components.unet_with(result):  # the in-memory result (copies, not the UNet's own tensors)
        torch.testing.assert_close(eps_of(components, rd, inputs), tuned_eps, atol=1e-6, rtol=0)
    with components.unet_with(result, scale=0.0):  # none of the tuning's change: the base model
        torch.testing.assert_close(eps_of(components, rd, inputs), base_eps, atol=1e-5, rtol=0)
    with components.unet_with(result, scale=0.5):  # part of it: neither the base nor the tuned model
        half_eps = eps_of(components, rd, inputs)
    assert min((half_eps - base_eps).abs().max(), (half_eps - tuned_eps).abs().max()) > 1e-5
    torch.testing.assert_close(eps_of(components, rd, inputs), base_eps, atol=0, rtol=0)  # base after the scope
    result.save(rd.stage(3), SaveTo(unet=components.unet))
    fresh = load_components(tiny_dir)  # a new process: the base model, then the saved stage-3 result
    saved = TuningResult.load(rd.stage(3))
    with fresh.unet_with(saved):
        torch.testing.assert_close(eps_of(fresh, rd, inputs), tuned_eps, atol=1e-6, rtol=0)
        saved.apply(fresh.unet)  # idempotent
        torch.testing.assert_close(eps_of(fresh, rd, inputs), tuned_eps, atol=1e-6, rtol=0)
    torch.testing.assert_close(eps_of(fresh, rd, inputs), base_eps, atol=1e-6, rtol=0)


def test_scaled_state_scales_a_loras_up_projection_and_interpolates_full_weights():
    lora = {"a.lora_A.weight": torch.ones(2, 3), "a.lora_B.weight": torch.full((3, 2), 4.0)}
    half = tuned_weights.scaled_state("lora", lora, {}, 0.5)
    assert torch.equal(half["a.lora_A.weight"], lora["a.lora_A.weight"])  # B A x scaled once, not twice
    assert torch.equal(half["a.lora_B.weight"], torch.full((3, 2), 2.0))
    tuned, base = {"w": torch.tensor([3.0, 5.0])}, {"w": torch.tensor([1.0, 1.0])}
    assert torch.equal(tuned_weights.scaled_state("full", tuned, base, 0.25)["w"], torch.tensor([1.5, 2.0]))
    assert tuned_weights.scaled_state("full", tuned, {}, 1.0) is tuned  # scale 1: the result as trained
    with pytest.raises(VidtuneError, match="no base weight"):
        tuned_weights.scaled_state("attention", tuned, {}, 0.5)


@pytest.mark.slow
def test_resumed_run_equals_an_uninterrupted_one(tiny_dir, tmp_path, monkeypatch):
    cfg = config(trainable="lora", steps=4, checkpoint_every=2, batch_size=2, grad_accum=2, warmup_steps=2)
    straight = load_components(tiny_dir)
    rd_a, inputs = make_run(tmp_path / "a")
    info_a = run3(cfg, straight, inputs, rd_a)

    rd_b, _ = make_run(tmp_path / "b")
    original = tuning.TrainLoop.run_step

    def killed_at_step_4(self):
        if self.step == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(tuning.TrainLoop, "run_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run3(cfg, load_components(tiny_dir), inputs, rd_b)
    monkeypatch.setattr(tuning.TrainLoop, "run_step", original)
    resumed = load_components(tiny_dir)  # a new process
    info_b = run3(cfg, resumed, inputs, rd_b)

    assert info_b["resumed_from"] == 2 and info_b["steps"] == 4
    assert info_b["final_loss"] == pytest.approx(info_a["final_loss"], abs=1e-6)
    a, b = straight.unet.state_dict(), resumed.unet.state_dict()
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert (rd_a.stage(3) / "loss.csv").read_text() == (rd_b.stage(3) / "loss.csv").read_text()

    # Another config never resumes the old checkpoints (step_000002 has another key).
    other = replace(cfg, tuning=replace(cfg.tuning, lr=2e-3, steps=2))
    info_c = run3(other, load_components(tiny_dir), inputs, rd_b)
    assert info_c["resumed_from"] == 0


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, words",
    [
        (dict(trainable="lora", lora_rank=0), ["tuning.lora_rank"]),
        (dict(steps=0), ["tuning.steps"]),
        (dict(lr=0.0), ["tuning.lr"]),
        (dict(lr=-1e-5), ["tuning.lr"]),
    ],
)
def test_bad_config_is_a_vidtune_error(fields, words, components, tmp_path):
    rd, inputs = make_run(tmp_path)
    with pytest.raises(VidtuneError) as err:
        run3(config(**fields), components, inputs, rd)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_missing_stage2_says_which_file_and_what_to_run(components, tmp_path):
    rd, inputs = make_run(tmp_path)
    (rd.stage(2) / "latents.safetensors").unlink()
    with pytest.raises(VidtuneError, match=r"stage2/latents\.safetensors.*--stages 1,2"):
        run3(config(), components, inputs, rd)


def test_mask_count_must_match_frames(components, tmp_path):
    rd, inputs = make_run(tmp_path, masks=FRAMES - 1)
    with pytest.raises(VidtuneError, match=rf"{FRAMES - 1} masks.*{FRAMES} fused frames"):
        run3(config(), components, inputs, rd)


def test_loading_tuned_weights_without_a_finished_stage3(tmp_path):
    from vidtune.results import TuningResult

    with pytest.raises(VidtuneError, match="tuning.json.*--stages 3"):
        TuningResult.load(tmp_path / "stage3")
