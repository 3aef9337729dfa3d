"""The `[runtime]` options change how the UNet computes, not what: stage 1 on the tiny model gives the
plain path's latents (within float rounding) with channels_last and with torch.compile, and no stage's
resume hash depends on them."""

from __future__ import annotations

import pytest
import torch

from vidtune import config as C
from vidtune import pipeline


def test_runtime_options_are_in_no_stage_hash():
    base = C.RunConfig()
    fast = C.apply_overrides(base, ["runtime.channels_last=true", "runtime.compile=true", "runtime.vae_tiling=true"])
    assert all(C.stage_hash(base, k) == C.stage_hash(fast, k) for k in (1, 2, 3, 4))
    assert fast.runtime.channels_last and fast.runtime.compile


def stage1_latents(cfg: C.RunConfig, tmp_path, name: str) -> torch.Tensor:
    from test_pipeline import write_openpose_folder
    from vidtune.results import SeparateResult

    poses = write_openpose_folder(tmp_path / "json")
    cfg = C.apply_overrides(cfg, [f"inputs.poses={poses}"])
    pipeline.run(cfg, tmp_path / name, stages=[1], progress=False, log=lambda s: None)
    return SeparateResult.load(tmp_path / name / "stage1", frames=False).x0


@pytest.mark.slow
@pytest.mark.parametrize("option", ["channels_last", "compile"])
def test_runtime_option_gives_the_plain_latents(option, tiny_model_dir, tmp_path):
    base = C.apply_overrides(
        C.RunConfig(),
        [
            f"model.path={tiny_model_dir}",
            "model.adapter=",
            "model.device=cpu",
            "inputs.prompt=a person dancing",
            "inputs.height=32",
            "inputs.width=32",
            "sampling.steps=3",
            "separate.segmenter=grabcut",
        ],
    )
    plain = stage1_latents(base, tmp_path, "plain")
    other = stage1_latents(C.apply_overrides(base, [f"runtime.{option}=true"]), tmp_path, option)
    torch.testing.assert_close(other, plain, atol=1e-4, rtol=1e-4)
    assert not torch.equal(plain, torch.zeros_like(plain))


def test_vae_tiling_is_switched_on_and_changes_nothing_below_the_tile(tiny_model_dir):
    from vidtune.models import load_components
    from vidtune.stages.common import decode_frames

    comps = load_components(tiny_model_dir)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    plain = decode_frames(comps.vae, latents, batch=2, progress=False)
    pipeline.prepare_runtime(comps, C.RuntimeConfig(vae_tiling=True))
    assert comps.vae.use_tiling
    assert (plain == decode_frames(comps.vae, latents, batch=2, progress=False)).all()
