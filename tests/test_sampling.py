"""The sampling loop: parity with diffusers' own adapter pipeline, the step hook, determinism."""

import numpy as np
import pytest
import torch
from PIL import Image

from vidtune.poses import render_pose
from vidtune.sampling import (
    adapter_features,
    denoise,
    frame_eps_fn,
    fusion_index,
    initial_noise,
    make_prompt_bank,
    prepare_scheduler,
)

STEPS = 4


def _pose_images(n: int, size: int = 32) -> np.ndarray:
    """n different skeletons (a figure shifting right) at size x size."""
    base = np.array(
        [
            [16, 6],
            [16, 10],
            [12, 10],
            [10, 15],
            [9, 19],
            [20, 10],
            [22, 15],
            [23, 19],
            [13, 19],
            [13, 25],
            [13, 30],
            [19, 19],
            [19, 25],
            [19, 30],
            [15, 5],
            [17, 5],
            [14, 6],
            [18, 6],
        ],
        float,
    )
    out = []
    for i in range(n):
        kps = np.concatenate([base + [i - n // 2, 0], np.ones((18, 1))], axis=1)
        out.append(render_pose(kps, size, size))
    return np.stack(out)


def _our_sample(comps, images, prompts, guidance, seed=0, hook=None, scheduler_name="ddim", batch_frames=2):
    from vidtune.models import make_scheduler

    scheduler = make_scheduler(scheduler_name, comps.scheduler.config)
    timesteps = prepare_scheduler(scheduler, STEPS, "cpu")
    bank = make_prompt_bank(comps.tokenizer, comps.text_encoder, prompts)
    feats = adapter_features(comps.adapter, images)
    z = initial_noise(len(images), (4, 8, 8), seed) * scheduler.init_noise_sigma
    eps_fn = frame_eps_fn(comps.unet, bank, feats, guidance, batch_frames)
    with torch.no_grad():
        return denoise(z, scheduler, timesteps, eps_fn, hook=hook, progress=False)


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_matches_diffusers_adapter_pipeline(tiny_components, guidance):
    from diffusers import StableDiffusionAdapterPipeline

    comps = tiny_components
    pipe = StableDiffusionAdapterPipeline(
        vae=comps.vae,
        text_encoder=comps.text_encoder,
        tokenizer=comps.tokenizer,
        unet=comps.unet,
        adapter=comps.adapter,
        scheduler=comps.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    images = _pose_images(1)
    prompt = "a person dancing on a beach"
    ref = pipe(
        prompt,
        image=Image.fromarray(images[0]),
        height=32,
        width=32,
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).images
    ours = _our_sample(comps, images, [prompt], guidance, seed=0)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_batched_frames_equal_frames_alone(tiny_components):
    images = _pose_images(3)
    prompts = ["a person dancing", "a person walking", "a person dancing"]
    together = _our_sample(tiny_components, images, prompts, 3.0, batch_frames=2)
    for i in range(3):
        # frame i alone with seed + i draws the same initial noise
        alone = _our_sample(tiny_components, images[i : i + 1], prompts[i : i + 1], 3.0, seed=i)
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-4, atol=1e-5)


def test_step_hook_sees_and_replaces_z_t_at_the_requested_step(tiny_components):
    images = _pose_images(2)
    prompts = ["a person dancing"] * 2
    seen: dict[int, torch.Tensor] = {}
    target = fusion_index(STEPS, 0.5)

    def record(step, t, z):
        seen[step] = z.clone()

    plain = _our_sample(tiny_components, images, prompts, 3.0, hook=record)
    assert sorted(seen) == list(range(STEPS)) and target == 2
    assert not torch.equal(seen[0], seen[target])  # the latents evolve; step 0 is z_T
    torch.testing.assert_close(seen[0], initial_noise(2, (4, 8, 8), 0))

    def identity(step, t, z):
        return z.clone() if step == target else None

    torch.testing.assert_close(_our_sample(tiny_components, images, prompts, 3.0, hook=identity), plain)

    after: dict[int, torch.Tensor] = {}

    def replace(step, t, z):
        after[step] = z.clone()
        return torch.zeros_like(z) if step == target else None

    changed = _our_sample(tiny_components, images, prompts, 3.0, hook=replace)
    assert not torch.allclose(changed, plain)
    assert not torch.equal(after[target], torch.zeros_like(after[target]))  # hook saw the real z_t first
    # after replacing z_t with zeros, step target+1 starts from the scheduler step of zeros, not of the old z
    assert not torch.allclose(after[target + 1], seen[target + 1])


def test_fusion_index_bounds():
    assert fusion_index(50, 0.5) == 25 and fusion_index(50, 0.0) == 0 and fusion_index(50, 1.0) == 49
    with pytest.raises(ValueError, match="fusion_step"):
        fusion_index(50, 1.5)


def test_initial_noise_is_per_frame_and_shared_mode():
    a = initial_noise(4, (4, 8, 8), 7)
    b = initial_noise(2, (4, 8, 8), 9)
    torch.testing.assert_close(a[2:], b)  # frame i uses seed + i, whatever the frame count
    shared = initial_noise(3, (4, 8, 8), 7, shared=True)
    assert torch.equal(shared[0], shared[2]) and torch.equal(shared[0], a[0])
