"""Stage 4 (temporal co-denoising) on the tiny model: the properties the design promises.

- one clip covering the video equals plain batched denoising (every attention mode, every scheduler);
- merging eps and stepping once equals Gen-L-Video's "step every clip, average z_{t-1}" exactly where
  the math says it should (deterministic samplers that are linear in the model output, each clip with
  its own scheduler state) and differs where it should not (stochastic samplers; a shared scheduler);
- the loop calls `scheduler.step` once per timestep;
- tail frames of a video whose length is not a multiple of the stride are denoised like the others;
- cross-frame attention on identical frames changes nothing, and `run` puts the processors back;
- clip batching is transparent; `global` attention gives every clip the same anchor;
- a short real pose sequence through stages 1, 2 and 4 gives a final.mp4 with every frame.

The UNet runs single-threaded here: on a shared two-core machine that is several times faster for
these tiny batches than two contending threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vidtune import config as C
from vidtune.config import CodenoiseConfig
from vidtune.inputs import VideoInputs
from vidtune.method import clips as clips_math
from vidtune.method.attention import ATTENTION_MODES, CrossFrameAttention
from vidtune.method.clips import ClipPlan, clip_batches, plan_clips
from vidtune.method.windows import MergeAccumulator, clip_windows
from vidtune.models import load_components, make_scheduler
from vidtune.pipeline import run_stage
from vidtune.rundir import RunDir
from vidtune.sampling import (
    FeatureBank,
    PromptBank,
    adapter_features,
    denoise,
    frame_eps_fn,
    guided_eps,
    initial_noise,
    make_prompt_bank,
    prepare_scheduler,
    step_kwargs,
)
from vidtune.stages import codenoise
from vidtune.stages.codenoise import codenoise_eps_fn
from vidtune.video import video_info

PROMPT = "a person dancing"
GUIDANCE = 3.0  # > 1: classifier-free guidance is exercised (the UNet sees [uncond, cond] batches)
SIZE = 32  # tiny model: 32x32 images, 8x8 latents
LATENT = (4, SIZE // 4, SIZE // 4)
TOL = dict(rtol=1e-4, atol=1e-4)  # batch composition may change the CPU kernels' summation order


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    """The session's tiny model folder (conftest: `make_tiny(..., seed=0)`); only read here."""
    return tiny_model_dir


@pytest.fixture(scope="module")
def comps(model_dir, one_thread):
    """A private copy of the components: these tests install and remove attention processors on its UNet."""
    return load_components(model_dir)


@dataclass
class Video:
    """Conditioning of a small random video: the clip plan, prompt banks, adapter features, z_T."""

    plan: ClipPlan
    clip_bank: PromptBank
    anchor_bank: PromptBank
    frame_bank: PromptBank
    features: FeatureBank
    noise: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.noise.shape[0]


def make_video(
    comps, n: int, m: int, s: int, *, weighting: str = "uniform", identical: bool = False, seed: int = 0
) -> Video:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(1 if identical else n, SIZE, SIZE, 3), dtype=np.uint8)
    images = np.repeat(images, n, axis=0) if identical else images
    plan = plan_clips(CodenoiseConfig(mode="overlap", clip_length=m, stride=s, weighting=weighting), n, PROMPT)
    bank = lambda prompts: make_prompt_bank(comps.tokenizer, comps.text_encoder, prompts)  # noqa: E731
    return Video(
        plan=plan,
        clip_bank=bank(plan.prompts),
        anchor_bank=bank([PROMPT]),
        frame_bank=bank([PROMPT] * n),
        features=adapter_features(comps.adapter, images),
        noise=initial_noise(n, LATENT, seed, shared=identical),
    )


def ours(
    comps,
    video: Video,
    *,
    scheduler: str = "ddim",
    steps: int = 3,
    mode: str = "middle",
    max_batch_frames: int = 64,
    eta: float = 0.0,
    wrap=None,
) -> torch.Tensor:
    """Stage 4's loop: codenoise_eps_fn merged eps, one scheduler step per timestep. Returns x0 latents."""
    sched = make_scheduler(scheduler, comps.scheduler)
    timesteps = prepare_scheduler(sched, steps, "cpu")
    if wrap is not None:
        wrap(sched)
    with torch.no_grad(), _installed(comps.unet, mode) as xattn:
        eps_fn = video_eps_fn(comps, xattn, video, GUIDANCE, max_batch_frames)
        return denoise(
            video.noise * sched.init_noise_sigma,
            sched,
            timesteps,
            eps_fn,
            eta=eta,
            generator=torch.Generator().manual_seed(1),
            progress=False,
        )


def video_eps_fn(comps, xattn, video: Video, guidance: float, max_batch_frames: int = 64, unguided_below: float = 0.0):
    """Stage 4's merged eps function over the video's clips (`codenoise_eps_fn`)."""
    return codenoise_eps_fn(
        comps.unet,
        xattn,
        video.plan,
        video.clip_bank,
        video.anchor_bank,
        video.features,
        guidance,
        max_batch_frames,
        unguided_below=unguided_below,
    )


def plain(comps, video: Video, *, scheduler: str = "ddim", steps: int = 3, mode: str | None = None) -> torch.Tensor:
    """Frame-wise denoising of the whole video in one batch (stages 1-2's eps); `mode` installs
    cross-frame attention with one group of all N frames, None keeps diffusers' own processors."""
    sched = make_scheduler(scheduler, comps.scheduler)
    timesteps = prepare_scheduler(sched, steps, "cpu")
    n = video.num_frames
    eps_fn = frame_eps_fn(comps.unet, video.frame_bank, video.features, GUIDANCE, batch_frames=n)
    with torch.no_grad(), _installed(comps.unet, mode) as xattn:
        if xattn is not None:
            xattn.set_groups([n, n])  # CFG: the uncond group, then the cond group
        return denoise(
            video.noise * sched.init_noise_sigma,
            sched,
            timesteps,
            eps_fn,
            generator=torch.Generator().manual_seed(1),
            progress=False,
        )


def per_clip_stepped(
    comps,
    video: Video,
    *,
    scheduler: str,
    steps: int = 3,
    mode: str = "middle",
    shared_scheduler: bool = False,
    eta: float = 0.0,
    timesteps_to_run: int | None = None,
):
    """Gen-L-Video's form: step every clip on its own, then z_{t-1}(f) = mean over clips containing f.

    Each clip has its own scheduler (its own multistep history), or, with `shared_scheduler`, one
    scheduler is stepped once per clip as Gen-L-Video's code does. Returns (latents, schedulers).
    """
    windows = video.plan.windows
    scheds = [make_scheduler(scheduler, comps.scheduler) for _ in range(1 if shared_scheduler else len(windows))]
    for sched in scheds:
        prepare_scheduler(sched, steps, "cpu")
    z = video.noise * scheds[0].init_noise_sigma
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad(), _installed(comps.unet, mode) as xattn:
        for t in scheds[0].timesteps[:timesteps_to_run]:
            total, count = torch.zeros_like(z), z.new_zeros(z.shape[0], 1, 1, 1)
            for k, (s, e) in enumerate(windows):
                sched = scheds[0 if shared_scheduler else k]
                xattn.set_groups([e - s, e - s])
                cond = video.clip_bank.take([k]).expand(e - s, -1, -1)
                eps = guided_eps(
                    comps.unet,
                    sched.scale_model_input(z[s:e], t),
                    t,
                    cond,
                    video.clip_bank.uncond,
                    video.features.take(list(range(s, e)), z.device, z.dtype),
                    GUIDANCE,
                )
                total[s:e] += sched.step(eps, t, z[s:e], **step_kwargs(sched, eta, generator), return_dict=False)[0]
                count[s:e] += 1
            z = total / count
    return z, scheds


class _installed:
    """Context manager: cross-frame attention of `mode` on the UNet (None: nothing installed)."""

    def __init__(self, unet, mode: str | None):
        self.unet, self.xattn = unet, (CrossFrameAttention(mode) if mode is not None else None)

    def __enter__(self) -> CrossFrameAttention | None:
        if self.xattn is not None:
            self.xattn.install(self.unet)
        return self.xattn

    def __exit__(self, *exc) -> None:
        if self.xattn is not None:
            self.xattn.remove()


# --- one clip covering the whole video equals plain denoising ---------------------------------------------


@pytest.mark.parametrize("mode", sorted(m for m in ATTENTION_MODES if m != "global"))
def test_one_clip_equals_plain_batched_denoising(comps, mode):
    video = make_video(comps, n=6, m=6, s=6)
    assert video.plan.windows == [(0, 6)]
    expected = plain(comps, video, mode=mode)
    got = ours(comps, video, mode=mode)
    torch.testing.assert_close(got, expected, **TOL)
    if mode == "none":  # and the "none" processor is diffusers' own self-attention
        torch.testing.assert_close(got, plain(comps, video, mode=None), **TOL)


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp", "euler", "ddpm"])
def test_one_clip_equals_plain_for_every_scheduler(comps, scheduler):
    video = make_video(comps, n=5, m=5, s=5)
    expected = plain(comps, video, scheduler=scheduler, mode="middle")
    got = ours(comps, video, scheduler=scheduler, mode="middle")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, **TOL)


def test_one_clip_equals_plain_with_global_attention(comps):
    """`global` with a single clip: the anchor is the clip's middle frame, as in `middle` mode."""
    video = make_video(comps, n=6, m=6, s=6)
    assert video.plan.anchor == 6 // 2 == 0 + 6 // 2
    torch.testing.assert_close(ours(comps, video, mode="global"), plain(comps, video, mode="middle"), **TOL)


# --- merged eps vs Gen-L-Video's per-clip stepping --------------------------------------------------------


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp", "euler"])
def test_per_clip_stepping_equals_merging_for_deterministic_linear_samplers(comps, scheduler):
    """With uniform weights, a deterministic sampler whose step is linear in (z, model outputs) with
    coefficients that depend only on the timesteps gives mean_k step_k(eps_k) = step(mean_k eps_k),
    provided every clip keeps its own scheduler state: DDIM (eta 0), but also DPM-Solver++ (a linear
    multistep method; each clip's history holds that clip's own x0 predictions) and Euler."""
    video = make_video(comps, n=10, m=6, s=2)  # clips (0, 6), (2, 8), (4, 10): frames in 1, 2 and 3 clips
    steps = 3  # DPM-Solver++: step 1 is 2nd order (uses step 0's output); the last is 1st (lower_order_final)
    expected, _ = per_clip_stepped(comps, video, scheduler=scheduler, steps=steps)
    got = ours(comps, video, scheduler=scheduler, steps=steps)
    torch.testing.assert_close(got, expected, **TOL)  # (the clips do disagree: see the `global` test)


@pytest.mark.parametrize("scheduler, eta", [("ddpm", 0.0), ("ddim", 1.0)])
def test_per_clip_stepping_differs_for_stochastic_samplers(comps, scheduler, eta):
    """Per-clip stepping adds independent noise per clip and averages it: frames in c clips keep only
    1/c of the noise variance the sampler adds. Ours adds it once, at full variance."""
    video = make_video(comps, n=10, m=6, s=2)
    expected, _ = per_clip_stepped(comps, video, scheduler=scheduler, eta=eta)
    got = ours(comps, video, scheduler=scheduler, eta=eta)
    assert (got - expected).abs().max() > 0.05 * got.abs().max()


def test_shared_scheduler_stepped_per_clip_breaks_dpmpp(comps):
    """Gen-L-Video's code steps ONE scheduler once per clip. DPM-Solver++ keeps a step index and its
    last model outputs: after one timestep of K clips the index says K steps were taken, and the
    "previous" output it extrapolates from belongs to another clip (other frames); the next timestep
    then runs off the end of the sigma table or uses the wrong sigmas."""
    video = make_video(comps, n=10, m=6, s=2)
    k = len(video.plan.windows)
    _, (sched,) = per_clip_stepped(comps, video, scheduler="dpmpp", steps=3, shared_scheduler=True, timesteps_to_run=1)
    assert sched.step_index == k != 1
    history = [m for m in sched.model_outputs if m is not None]
    assert len(history) >= 2 and not torch.equal(history[-1], history[-2])  # two clips' x0, not one clip's
    try:
        broken, _ = per_clip_stepped(comps, video, scheduler="dpmpp", steps=3, shared_scheduler=True)
    except IndexError:  # diffusers reads sigmas[step_index + 1]: past the end of the table at timestep 2
        return
    assert (broken - ours(comps, video, scheduler="dpmpp", steps=3)).abs().max() > 1e-2


@pytest.mark.parametrize("scheduler", ["dpmpp", "euler", "ddim"])
def test_our_loop_steps_the_scheduler_once_per_timestep(comps, scheduler):
    video = make_video(comps, n=10, m=4, s=2)  # 4 clips
    calls = []

    def count_steps(sched):
        step = sched.step
        sched.step = lambda *a, **kw: (calls.append(a[0].shape[0]), step(*a, **kw))[1]

    steps = 3
    holder = {}
    ours(comps, video, scheduler=scheduler, steps=steps, wrap=lambda s: (holder.update(s=s), count_steps(s)))
    assert calls == [video.num_frames] * steps  # once per timestep, on the whole video
    if scheduler != "ddim":
        assert holder["s"].step_index == steps


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm", "euler", "dpmpp"])
def test_fused_init_is_noised_to_the_first_step_it_runs(comps, scheduler):
    """init = "fused" (SDEdit): z must sit at the noise level of the step the loop starts at. In the UNet's
    input space every scheduler then agrees: scale_model_input(z, t) = sqrt(abar_t) x0 + sqrt(1 - abar_t) n.
    (Euler / DPM-Solver's add_noise reads the sigma at the scheduler's begin index, not at t.)"""
    n, steps = 3, 10
    cfg = CodenoiseConfig(init="fused", strength=0.6, clip_length=n, stride=n)
    sched = make_scheduler(scheduler, comps.scheduler)
    all_steps = prepare_scheduler(sched, steps, "cpu")
    x0 = torch.randn(n, *LATENT, generator=torch.Generator().manual_seed(5))
    z, start = codenoise.initial_latents(cfg, sched, all_steps, n, LATENT, "cpu", torch.float32, x0)
    assert start == 4  # round((1 - 0.6) * 10)
    timesteps = prepare_scheduler(sched, steps, "cpu", start=start)
    t = timesteps[0]
    assert t == all_steps[start]
    abar = sched.alphas_cumprod[t.long()].to(torch.float32)
    noise = initial_noise(n, LATENT, cfg.seed)
    torch.testing.assert_close(sched.scale_model_input(z, t), abar.sqrt() * x0 + (1 - abar).sqrt() * noise, **TOL)


# --- coverage, attention, restoration ---------------------------------------------------------------------


def test_tail_frames_are_denoised_like_the_others(comps):
    """N = 11, M = 4, S = 3: Gen-L-Video's windows (0, 4), (3, 7), (6, 10) leave frame 10 out (and zero
    it); ours add (7, 11)."""
    video = make_video(comps, n=11, m=4, s=3)
    assert video.plan.windows == [(0, 4), (3, 7), (6, 10), (7, 11)]
    x0 = ours(comps, video, steps=3)
    std = x0.flatten(1).std(dim=1)
    body = std[:9]
    assert torch.isfinite(x0).all()
    for f in (9, 10):
        assert body.min() / 2 < std[f] < body.max() * 2, (f, std.tolist())
        assert abs(x0[f].mean() - x0[:9].mean()) < 3 * body.mean()
    # frame 10 went through the sampler: it is no longer its initial noise
    assert (x0[10] - video.noise[10]).abs().max() > 0.1


@pytest.mark.parametrize("mode", ["first", "sparse-causal", "middle", "global"])
def test_anchor_attention_on_identical_frames_equals_none(comps, mode):
    """Identical frames (same noise, pose and prompt): attending to any frame of the clip is attending to
    oneself, so every anchor mode equals plain self-attention, end to end over several clips."""
    video = make_video(comps, n=8, m=4, s=2, identical=True)
    assert len(video.plan.windows) == 3
    torch.testing.assert_close(ours(comps, video, mode=mode), ours(comps, video, mode="none"), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["overlap", "shifted"])
def test_run_restores_the_unet_processors(comps, tmp_path, mode):
    unet = comps.unet
    before = dict(unet.attn_processors)
    x = torch.randn(2, *LATENT, generator=torch.Generator().manual_seed(3))
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out_before = unet(x, torch.tensor(500), encoder_hidden_states=ctx).sample

    n = 7
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            f"inputs.prompt={PROMPT}",
            f"inputs.height={SIZE}",
            f"inputs.width={SIZE}",
            "sampling.steps=2",
            f"sampling.guidance={GUIDANCE}",
            f"codenoise.mode={mode}",
            "codenoise.clip_length=4",
            "codenoise.stride=2",
            "codenoise.attention=global",
            "codenoise.background=free",
            "codenoise.init=noise",
        ],
    )  # stage 4 alone: no stage 2 to keep or start from
    images = np.random.default_rng(0).integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    inputs = VideoInputs(pose_images=images, keypoints=None, prompts=[PROMPT] * n, fps=8.0, summary="random")
    info = run_stage(4, cfg, comps, inputs, RunDir(tmp_path / "run"), progress=False)

    after = dict(unet.attn_processors)
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    with torch.no_grad():
        assert torch.equal(unet(x, torch.tensor(500), encoder_hidden_states=ctx).sample, out_before)
    if mode == "overlap":
        assert info["clips"] == len(clip_windows(n, 4, 2)) == 3
        assert info["unet_frame_evals_per_step"] == (3 * 4 + 1) * 2  # clips + the global anchor, with CFG
    else:  # every frame once per step (+ the anchor)
        assert info["unet_frame_evals_per_step"] == (n + 1) * 2
    assert video_info(tmp_path / "run" / "final.mp4").num_frames == n


# --- batching ---------------------------------------------------------------------------------------------


def test_clip_batches_respect_the_budget_and_keep_every_clip_once_in_order():
    for n in range(1, 60, 3):
        for m in (1, 3, 4, 8, 16):
            for s in {1, max(1, m // 2), m}:
                windows = clip_windows(n, m, s, shrink_clip=True)
                for budget in (1, 3, 4, 8, 17, 64, 1000):
                    batches = clip_batches(windows, budget)
                    assert [k for b in batches for k in b] == list(range(len(windows)))
                    for b in batches:
                        frames = sum(windows[k][1] - windows[k][0] for k in b)
                        assert b and (frames <= budget or len(b) == 1)
                    # greedy: a batch is closed only when the next clip would not fit
                    for b, nxt in zip(batches, batches[1:]):
                        used = sum(windows[k][1] - windows[k][0] for k in b)
                        assert used + windows[nxt[0]][1] - windows[nxt[0]][0] > budget


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["middle", "global"])
def test_results_do_not_depend_on_max_batch_frames(comps, mode):
    video = make_video(comps, n=10, m=4, s=2)  # 4 clips of 4 frames
    results = [ours(comps, video, mode=mode, steps=2, max_batch_frames=b) for b in (1, 8, 100)]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], **TOL)


# --- global attention -------------------------------------------------------------------------------------


class _Recorder(MergeAccumulator):
    """A MergeAccumulator that also keeps every clip's prediction."""

    added: list = []

    def add(self, window, pred, weights):
        _Recorder.added.append((window, pred.clone()))
        super().add(window, pred, weights)


def clip_predictions(comps, video: Video, mode: str, monkeypatch) -> dict[tuple[int, int], torch.Tensor]:
    """eps_k of every clip at one timestep (t = 500), from the stage's own eps function."""
    _Recorder.added = []
    monkeypatch.setattr(codenoise, "MergeAccumulator", _Recorder)
    with torch.no_grad(), _installed(comps.unet, mode) as xattn:
        eps_fn = video_eps_fn(comps, xattn, video, GUIDANCE, max_batch_frames=8)
        eps_fn(video.noise, torch.tensor(500), 0)
    return dict(_Recorder.added)


def test_global_attention_gives_every_clip_the_same_anchor(comps, monkeypatch):
    """In `global` mode a frame's eps depends on itself, its prompt, its pose and the ONE anchor: so the
    clips that share a frame predict the same eps for it. In `middle` mode each clip has its own anchor
    and they disagree (which is what makes the check meaningful)."""
    video = make_video(comps, n=10, m=4, s=2)
    windows = video.plan.windows
    for mode, same in (("global", True), ("middle", False)):
        preds = clip_predictions(comps, video, mode, monkeypatch)
        assert list(preds) == windows
        for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
            lo, hi = max(s1, s2), min(e1, e2)
            a, b = preds[(s1, e1)][lo - s1 : hi - s1], preds[(s2, e2)][lo - s2 : hi - s2]
            if same:
                torch.testing.assert_close(a, b, **TOL)
            else:
                assert (a - b).abs().max() > 100 * TOL["atol"]


def test_global_attention_records_the_anchor_once_per_step(comps, monkeypatch):
    video = make_video(comps, n=9, m=4, s=2)
    recorded: list[int] = []
    original = CrossFrameAttention._store_anchor

    def store(self, name, key, value):
        if not self._anchors:
            recorded.append(key.shape[0])
        original(self, name, key, value)

    monkeypatch.setattr(CrossFrameAttention, "_store_anchor", store)
    x0 = ours(comps, video, mode="global", steps=3, max_batch_frames=4)
    assert torch.isfinite(x0).all()
    assert recorded == [2] * 3  # one [uncond, cond] anchor forward per step, shared by every batch of clips
    assert video.plan.anchor == 9 // 2


# --- a real pose sequence through the pipeline ------------------------------------------------------------


@pytest.mark.slow
def test_pipeline_stages_1_2_4_keep_every_frame(comps, model_dir, shared_dir, tmp_path):
    from vidtune import pipeline

    n = 20
    poses = shared_dir / "data/openpose/DurhamARC__raga-pose-estimation/example_1person"
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            f"model.path={model_dir}",
            "model.adapter=",
            f"inputs.poses={poses}",
            f"inputs.prompt={PROMPT}",
            f"inputs.frames={n}",
            f"inputs.height={SIZE}",
            f"inputs.width={SIZE}",
            "sampling.steps=2",
            f"sampling.guidance={GUIDANCE}",
            "separate.segmenter=grabcut",
            "codenoise.clip_length=8",
            "codenoise.stride=5",
        ],
    )  # clips (0, 8), (5, 13), (10, 18) and the tail clip (12, 20)
    summary = pipeline.run(
        cfg, tmp_path / "run", stages=[1, 2, 4], progress=False, components=comps, log=lambda s: None
    )
    assert [summary.stages[k][0] for k in (1, 2, 4)] == ["ran"] * 3
    assert video_info(tmp_path / "run" / "final.mp4").num_frames == n

    # Stage 2 fused again at every step: where every frame sees background (outside each frame's dilated
    # figure), the frames agree down to x0 (up to the last step's own noise, sqrt(1 - abar_0) = 0.03), far
    # more than stage 1's do. Stage 4 kept that background (codenoise.background = "keep"): there it stays
    # at stage 2's, while the figure is denoised again.
    from safetensors.torch import load_file

    from vidtune.method import fusion as F

    s1 = load_file(str(tmp_path / "run/stage1/latents.safetensors"))
    fg, x1 = s1["fg"], s1["x0"]
    s2 = load_file(str(tmp_path / "run/stage2/latents.safetensors"))["x0"]
    s4 = load_file(str(tmp_path / "run/stage4/latents.safetensors"))["x0"]
    always_bg = (F.dilate(fg, cfg.fusion.dilate) == 0).all(dim=0)[0]  # (h, w)
    figure = (fg > 0.99).any(dim=0)[0]
    assert always_bg.any() and figure.any()
    spread = lambda x: float(x[:, :, always_bg].std(dim=0).mean())  # noqa: E731 - across frames
    assert spread(s2) < 0.25 * spread(x1)
    kept = float((s4 - s2)[:, :, always_bg].abs().mean())
    redrawn = float((s4 - s2)[:, :, figure].abs().mean())
    assert kept < 0.25 * redrawn


def test_stage4_merge_weights_are_stored_per_clip_in_linear_memory():
    """A dense clips x frames matrix would be 12,500 x 100,000 here (5 GB in fp32)."""
    plan = plan_clips(CodenoiseConfig(mode="overlap", clip_length=16, stride=8), 100_000, PROMPT)
    assert sum(w.numel() for w in plan.weights) == sum(e - s for s, e in plan.windows)
    dense = plan_clips(CodenoiseConfig(mode="overlap", clip_length=4, stride=2), 9, PROMPT)
    from vidtune.method.windows import frame_merge_weights

    full = frame_merge_weights(9, dense.windows, "uniform")
    assert all(torch.equal(w, full[k, s:e]) for k, ((s, e), w) in enumerate(zip(dense.windows, dense.weights)))


# --- shifted clips (codenoise.mode = "shifted", the default) ----------------------------------------------


def test_shifted_mode_evaluates_every_frame_once_per_step_with_moving_clips(comps, monkeypatch):
    """Each step: the clips tile the video (one UNet row per frame and CFG branch), their boundaries move
    from step to step, and a frame's eps is its one clip's prediction (merge weight 1)."""
    n, m = 13, 4
    video = make_video(comps, n=n, m=m, s=2)
    clips = clips_math.clip_schedule(CodenoiseConfig(mode="shifted", clip_length=m), n, PROMPT)
    bank = make_prompt_bank(comps.tokenizer, comps.text_encoder, list(clips.prompts))
    rows: list[int] = []
    hook = comps.unet.register_forward_pre_hook(lambda mod, args: rows.append(args[0].shape[0]))
    _Recorder.added = []
    monkeypatch.setattr(codenoise, "MergeAccumulator", _Recorder)
    try:
        with torch.no_grad(), _installed(comps.unet, "middle") as xattn:
            eps_fn = codenoise_eps_fn(
                comps.unet, xattn, clips, bank, video.anchor_bank, video.features, GUIDANCE, max_batch_frames=6
            )
            per_step = []
            for step in range(3):
                before = len(_Recorder.added)
                eps = eps_fn(video.noise, torch.tensor(500), step)
                per_step.append(_Recorder.added[before:])
    finally:
        hook.remove()
    assert sum(rows) == 3 * n * 2
    windows = [[w for w, _ in added] for added in per_step]
    for ws in windows:
        assert ws[0][0] == 0 and ws[-1][1] == n and all(a[1] == b[0] for a, b in zip(ws, ws[1:]))
    assert windows[0] != windows[1] != windows[2]
    torch.testing.assert_close(eps, torch.cat([pred for _, pred in per_step[-1]]))


def test_shifted_and_overlap_agree_when_one_clip_holds_the_video(comps):
    n = 6
    video = make_video(comps, n=n, m=n, s=n)
    shifted = clips_math.clip_schedule(CodenoiseConfig(mode="shifted", clip_length=n), n, PROMPT)
    assert [shifted.at(j).windows for j in range(4)] == [video.plan.windows] * 4 == [[(0, n)]] * 4
    a = ours(comps, video, steps=2)
    video.plan = shifted  # the eps function takes a plan or a schedule
    torch.testing.assert_close(ours(comps, video, steps=2), a, rtol=0, atol=0)


def test_shifted_clips_take_the_prompt_of_most_of_their_frames():
    schedule = {0: "a snowy field", 10: "a beach"}
    clips = clips_math.clip_schedule(CodenoiseConfig(mode="shifted", clip_length=8), 24, schedule)
    assert clips.prompts == ("a snowy field", "a beach")
    for step in range(8):
        plan = clips.at(step)
        for (s, e), prompt in zip(plan.windows, plan.prompts):
            inside = min(e, 10) - s
            assert prompt == ("a snowy field" if inside > (e - s) - inside or inside == (e - s) / 2 else "a beach")


def test_steps_below_unguided_below_evaluate_the_conditional_branch_alone(comps, monkeypatch):
    """codenoise.unguided_below: guidance (two UNet rows per frame) at t >= the threshold, the conditional
    prediction alone (one row) below it; the guided steps are exactly the plain guided ones."""
    video = make_video(comps, 6, 4, 2)
    rows = []
    forward = comps.unet.forward
    monkeypatch.setattr(comps.unet, "forward", lambda x, *a, **k: rows.append(x.shape[0]) or forward(x, *a, **k))

    def eps(guidance: float, unguided_below: float, t: int) -> torch.Tensor:
        with torch.no_grad(), _installed(comps.unet, "middle") as xattn:
            return video_eps_fn(comps, xattn, video, guidance, unguided_below=unguided_below)(
                video.noise, torch.tensor(t), 0
            )

    frames = sum(e - s for s, e in video.plan.windows)
    assert torch.equal(eps(GUIDANCE, 500.0, 501), eps(GUIDANCE, 0.0, 501))  # at or above: guided as before
    assert rows[-2:] == [2 * frames, 2 * frames]
    low = eps(GUIDANCE, 500.0, 499)
    assert rows[-1] == frames  # below: one row per frame ...
    assert torch.equal(low, eps(1.0, 0.0, 499))  # ... the conditional prediction
    assert not torch.equal(low, eps(GUIDANCE, 0.0, 499))


def _frame_alone_sets(model_dir, poses, steps: int) -> list[str]:
    """A small run on `poses` whose stage 4 redraws each frame on its own with the base model's guidance at
    every step (one-frame clips, no attention, no background guide): with the start a test gives it, it
    repeats an earlier stage's steps exactly."""
    return [
        f"model.path={model_dir}",
        "model.adapter=",
        f"inputs.poses={poses}",
        f"inputs.prompt={PROMPT}",
        f"inputs.height={SIZE}",
        f"inputs.width={SIZE}",
        f"sampling.steps={steps}",
        f"sampling.guidance={GUIDANCE}",
        "separate.segmenter=grabcut",
        "fusion.repeat=false",
        "codenoise.clip_length=1",
        "codenoise.stride=1",
        "codenoise.attention=none",
        "codenoise.background=free",
        "codenoise.unguided_below=0",
    ]


def test_a_trajectory_start_with_the_base_unet_ends_at_stage_2s_frames(comps, model_dir, tmp_path):
    """`codenoise.init = "trajectory"` starts from stage 2's own latent at the step stage 4 starts at: with
    the base UNet, one-frame clips, no attention, no guide and the same guidance, stage 4 repeats stage 2's
    last steps and ends where stage 2 ended (so whatever a tuned UNet or the attention change is theirs);
    `init = "fused"` re-noises with new noise and does not."""
    from safetensors.torch import load_file

    from run_helpers import write_poses
    from vidtune import pipeline

    poses = write_poses(tmp_path / "poses", n=6)
    sets = [*_frame_alone_sets(model_dir, poses, steps=6), "codenoise.strength=0.5"]
    x0 = {}
    for init in ("trajectory", "fused"):
        cfg = C.apply_overrides(C.RunConfig(), [*sets, f"codenoise.init={init}"])
        run = tmp_path / init
        pipeline.run(cfg, run, stages=[1, 2, 4], progress=False, components=comps, log=lambda s: None)
        s2 = load_file(str(run / "stage2/latents.safetensors"))
        assert s2["trajectory"].shape[0] == 6 - 3  # the latents entering stage 2's steps 3, 4 and 5
        x0[init] = load_file(str(run / "stage4/latents.safetensors"))["x0"]
    torch.testing.assert_close(x0["trajectory"], s2["x0"], **TOL)
    assert float((x0["fused"] - s2["x0"]).abs().mean()) > 100 * TOL["atol"]


def test_the_figure_pull_joins_at_the_first_step_below_its_timestep() -> None:
    from vidtune.stages.codenoise import first_step_below

    schedule = torch.tensor([937, 875, 812, 750, 687, 625, 562, 500, 437, 375, 312, 250, 187, 125, 62, 0])
    tail = schedule[6:]  # stage 4 starting at step index 6
    assert first_step_below(tail, 6, 1000.0) == 6  # the default: from stage 4's first step
    assert first_step_below(tail, 6, 400.0) == 9  # 375 is the first timestep below 400
    assert first_step_below(tail, 6, 0.0) == 16  # none below: past the last step, the guide never acts


def test_stage_1s_noise_with_the_base_unet_redraws_stage_1s_frames(comps, model_dir, tmp_path):
    """`codenoise.noise_mode = "stage1"` starts stage 4 from stage 1's own initial noise: from noise, with the
    base UNet, one-frame clips, no attention, no guide and stage 1's steps and guidance, stage 4 repeats stage 1
    and ends at its frames (the layout stage 1 drew to the pose comes back); stage 4's own seed does not, and
    `codenoise.steps` runs stage 4 on a schedule of its own."""
    from safetensors.torch import load_file

    from run_helpers import write_poses
    from vidtune import pipeline

    poses = write_poses(tmp_path / "poses", n=4)
    sets = [
        *_frame_alone_sets(model_dir, poses, steps=4),
        "separate.stop=end",
        "separate.noise_mode=independent",
        "separate.seed=11",
        "codenoise.init=noise",
        "codenoise.seed=0",
    ]
    x0 = {}
    for name, extra in (
        ("stage1", []),
        ("own", ["codenoise.noise_mode=independent"]),
        ("steps", ["codenoise.steps=3"]),
    ):
        mode = [] if extra and "noise_mode" in extra[0] else ["codenoise.noise_mode=stage1"]
        cfg = C.apply_overrides(C.RunConfig(), [*sets, *mode, *extra])
        run = tmp_path / name
        pipeline.run(cfg, run, stages=[1, 2, 4], progress=False, components=comps, log=lambda s: None)
        s1 = load_file(str(run / "stage1/latents.safetensors"))["x0"]
        x0[name] = load_file(str(run / "stage4/latents.safetensors"))["x0"]
    torch.testing.assert_close(x0["stage1"], s1, **TOL)
    assert float((x0["own"] - s1).abs().mean()) > 100 * TOL["atol"]
    assert float((x0["steps"] - s1).abs().mean()) > 100 * TOL["atol"]
