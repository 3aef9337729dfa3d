"""models.py: loading (with pre-checks), the real SD v1-4 architectures on the meta device,
the tiny model's round trip, and the scheduler registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidtune.errors import VidtuneError
from vidtune.models import (
    SCHEDULERS,
    Components,
    describe,
    load_components,
    make_scheduler,
    sd_schedule_config,
)
from vidtune.testing import make_tiny

# Exact parameter counts of the real architectures (SD v1-4 UNet 859.5M, VAE 83.7M, CLIP ViT-L/14
# text tower 123.1M, T2I-Adapter full_adapter 77.4M, SAM ViT-B 93.7M).
REAL_PARAMS = {
    "unet": 859_520_964,
    "vae": 83_653_863,
    "text_encoder": 123_060_480,
    "adapter": 77_369_280,
    "sam_model": 93_735_728,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy CPU they spin (50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def loaded(tiny: Path) -> Components:
    return load_components(tiny)


@pytest.fixture(scope="module")
def real_meta(models_dir: Path) -> Components:
    return load_components(
        models_dir / "sd-v1-4",
        adapter=models_dir / "t2iadapter-openpose-sd14v1",
        sam=models_dir / "sam-vit-base",
        weights=False,
    )


def fresh_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------ real architectures (meta)


def test_real_architectures_on_meta_have_sd14_sizes(real_meta: Components) -> None:
    for name, expected in REAL_PARAMS.items():
        module = getattr(real_meta, name)
        assert n_params(module) == expected, name
        assert next(module.parameters()).device.type == "meta"
    assert real_meta.vae_scale_factor == 8 and real_meta.latent_channels == 4
    assert real_meta.scaling_factor == pytest.approx(0.18215)
    assert type(real_meta.scheduler).__name__ == "PNDMScheduler"
    assert "unet 859.5M" in describe(real_meta) and "adapter 77.4M" in describe(real_meta)


def test_real_clip_tokenizer_loads_offline(real_meta: Components) -> None:
    ids = real_meta.tokenizer("a photo of a dancer, full body").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 11400, 267, 1476, 1774, 49407]
    assert real_meta.tokenizer.model_max_length == 77


# Keys allowed to differ between the tiny model and SD v1-4: sizes only.
SIZE_KEYS = {
    "unet": {
        "block_out_channels",
        "layers_per_block",
        "attention_head_dim",
        "cross_attention_dim",
        "sample_size",
        "down_block_types",
        "up_block_types",
    },
    "vae": {"block_out_channels", "layers_per_block", "sample_size", "down_block_types", "up_block_types"},
    "text_encoder": {
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "projection_dim",
    },
    "adapter": {"channels", "num_res_blocks", "downscale_factor"},
}
IGNORED = {
    "_diffusers_version",
    "_name_or_path",
    "transformers_version",
    "_use_default_values",
    "dtype",
    "torch_dtype",
    "architectures",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "use_return_dict",
    "_commit_hash",
    "_attn_implementation_autoset",
    "_class_name",
    "dropout",
    "initializer_factor",
}  # legacy keys of the real configs that transformers 5 no longer writes


def config_dict(module: torch.nn.Module) -> dict:
    cfg = module.config
    return dict(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg)


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.slow
def test_tiny_differs_from_sd14_only_in_sizes(tiny: Path, real_meta: Components) -> None:
    tiny_meta = load_components(tiny, weights=False)
    for name, allowed in SIZE_KEYS.items():
        real, small = config_dict(getattr(real_meta, name)), config_dict(getattr(tiny_meta, name))
        differing = {k for k in real.keys() | small.keys() if k not in IGNORED and real.get(k) != small.get(k)}
        assert differing <= allowed, (name, {k: (real.get(k), small.get(k)) for k in differing - allowed})
        assert type(getattr(real_meta, name)) is type(getattr(tiny_meta, name))
    # Block layout: cross-attention blocks then one plain block (down), mirrored (up).
    for meta in (real_meta, tiny_meta):
        down, up = meta.unet.config.down_block_types, meta.unet.config.up_block_types
        assert list(down) == ["CrossAttnDownBlock2D"] * (len(down) - 1) + ["DownBlock2D"]
        assert list(up) == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(up) - 1)
        assert set(meta.vae.config.down_block_types) == {"DownEncoderBlock2D"}
        assert meta.latent_channels == 4
        assert meta.adapter.config.downscale_factor == meta.vae_scale_factor  # features land on the UNet
        assert list(meta.adapter.config.channels) == list(meta.unet.config.block_out_channels)
        assert meta.text_encoder.config.hidden_size == meta.unet.config.cross_attention_dim
    # Same betas and prediction type.
    real_s, tiny_s = real_meta.scheduler, tiny_meta.scheduler
    torch.testing.assert_close(real_s.alphas_cumprod, tiny_s.alphas_cumprod)
    assert real_s.config.prediction_type == tiny_s.config.prediction_type == "epsilon"
    # SAM: only sizes differ (no sub-config switches activation, norms, pos-embedding kinds...).
    sam_size_words = (
        "hidden_size",
        "output_channels",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "window_size",
        "global_attn_indexes",
        "num_pos_feats",
        "mlp_dim",
        "mask_input_channels",
        "iou_head_hidden_dim",
        "image_embedding_size",
        "scale",
        "intermediate_size",
        "projection_dim",
    )
    real, small = flat(config_dict(real_meta.sam_model)), flat(config_dict(tiny_meta.sam_model))
    differing = {
        k for k in real.keys() | small.keys() if k.split(".")[-1] not in IGNORED and real.get(k) != small.get(k)
    }
    assert all(k.split(".")[-1] in sam_size_words for k in differing), differing


# ------------------------------------------------------------------ tiny round trip


def test_tiny_round_trip_weights_equal_saved(tiny: Path, loaded: Components) -> None:
    files = {
        "unet": "unet/diffusion_pytorch_model.safetensors",
        "vae": "vae/diffusion_pytorch_model.safetensors",
        "adapter": "adapter/diffusion_pytorch_model.safetensors",
        "text_encoder": "text_encoder/model.safetensors",
        "sam_model": "sam/model.safetensors",
    }
    for name, rel in files.items():
        saved = load_file(tiny / rel)
        state = getattr(loaded, name).state_dict()
        assert saved, name
        for key, value in saved.items():
            assert key in state, (name, key)
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    assert loaded.sam_processor is not None
    assert loaded.sources == {"model": str(tiny), "adapter": str(tiny / "adapter"), "sam": str(tiny / "sam")}


def test_tiny_sizes_and_adapter_residuals_line_up(loaded: Components) -> None:
    assert loaded.vae_scale_factor == 4 and loaded.latent_channels == 4
    assert loaded.vae.config.sample_size == 32 and loaded.unet.config.sample_size == 8
    assert loaded.tokenizer("a person dancing on a beach at night").input_ids[1:-1] == [
        loaded.tokenizer.convert_tokens_to_ids(w + "</w>") for w in "a person dancing on a beach at night".split()
    ]
    g = torch.Generator().manual_seed(0)
    pose = torch.rand(2, 3, 32, 32, generator=g)
    feats = loaded.adapter(pose)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 8, 8), (2, 64, 4, 4)]
    ids = loaded.tokenizer(["a red person"] * 2, padding="max_length", max_length=77, return_tensors="pt").input_ids
    emb = loaded.text_encoder(ids).last_hidden_state
    z = torch.randn(2, 4, 8, 8, generator=g)
    with torch.no_grad():
        plain = loaded.unet(z, 10, encoder_hidden_states=emb).sample
        guided = loaded.unet(z, 10, encoder_hidden_states=emb, down_intrablock_additional_residuals=list(feats)).sample
    assert plain.shape == guided.shape == z.shape
    assert not torch.allclose(plain, guided)  # the residuals reach the UNet
    assert loaded.vae.decode(z).sample.shape == (2, 3, 32, 32)


def test_make_tiny_is_deterministic(tmp_path: Path, tiny: Path, loaded: Components) -> None:
    again = make_tiny(tmp_path / "again", seed=0, with_sam=False)
    other = make_tiny(tmp_path / "other", seed=1, with_sam=False)
    rel = "unet/diffusion_pytorch_model.safetensors"
    a, b, c = load_file(tiny / rel), load_file(again / rel), load_file(other / rel)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert not (again / "sam").exists()
    # Same outputs for a fixed input after loading twice.
    comps = load_components(again)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    emb = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(comps.unet(z, 5, emb).sample, loaded.unet(z, 5, emb).sample, rtol=0, atol=0)


def test_tiny_model_index_reads_as_sd_pipeline(tiny: Path) -> None:
    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(tiny)
    assert index["_class_name"] == "StableDiffusionPipeline"
    for comp, (lib, cls) in {
        "unet": ("diffusers", "UNet2DConditionModel"),
        "vae": ("diffusers", "AutoencoderKL"),
        "text_encoder": ("transformers", "CLIPTextModel"),
        "tokenizer": ("transformers", "CLIPTokenizer"),
        "scheduler": ("diffusers", "DDIMScheduler"),
    }.items():
        assert index[comp] == [lib, cls]
        assert (tiny / comp).is_dir()


def test_dtype_keeps_vae_fp32(tiny: Path) -> None:
    comps = load_components(tiny, sam=None, dtype=torch.bfloat16)
    assert comps.unet.dtype == torch.bfloat16 and comps.text_encoder.dtype == torch.bfloat16
    assert comps.adapter.dtype == torch.bfloat16
    assert comps.vae.dtype == torch.float32 and comps.dtype == torch.bfloat16


def test_explicit_adapter_folder_and_no_adapter(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    shutil.move(model / "adapter", tmp_path / "ad")
    shutil.rmtree(model / "sam")
    bare = load_components(model)
    assert bare.adapter is None and bare.sam_model is None
    assert load_components(model, adapter=tmp_path / "ad").adapter is not None


# ------------------------------------------------------------------ errors


def error_of(*args, **kwargs) -> str:
    with pytest.raises(VidtuneError) as info:
        load_components(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_unet_folder(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    shutil.rmtree(model / "unet")
    msg = error_of(model)
    assert "unet/" in msg and "hf download CompVis/stable-diffusion-v1-4" in msg


def test_missing_model_index(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    (model / "model_index.json").unlink()
    msg = error_of(model)
    assert "model_index.json" in msg and "hf download" in msg


def test_missing_weights(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    (model / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    msg = error_of(model)
    assert "vae" in msg and "diffusion_pytorch_model.safetensors" in msg and "hf download" in msg


def test_missing_adapter_and_sam_weights_name_their_repos(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    (model / "adapter" / "diffusion_pytorch_model.safetensors").unlink()
    assert "TencentARC/t2iadapter_openpose_sd14v1" in error_of(model)
    shutil.rmtree(model / "adapter")
    (model / "sam" / "model.safetensors").unlink()
    assert "facebook/sam-vit-base" in error_of(model)


def test_pickle_weights_need_allow_pickle(tmp_path: Path, tiny: Path, loaded: Components) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    st = model / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(st), model / "unet" / "diffusion_pytorch_model.bin")
    st.unlink()
    msg = error_of(model)
    assert "--allow-pickle" in msg and "diffusion_pytorch_model.bin" in msg
    comps = load_components(model, allow_pickle=True)
    for k, v in loaded.unet.state_dict().items():
        assert torch.equal(comps.unet.state_dict()[k], v)


def test_sdxl_model_index_is_refused(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    index = json.loads((model / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLPipeline"
    index["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    (model / "model_index.json").write_text(json.dumps(index))
    msg = error_of(model)
    assert "SDXL" in msg and "1.x" in msg


def edit_json(path: Path, **changes) -> None:
    cfg = json.loads(path.read_text())
    cfg.update(changes)
    path.write_text(json.dumps(cfg))


def test_sdxl_unet_is_refused(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    edit_json(model / "unet" / "config.json", cross_attention_dim=2048)
    assert "SDXL" in error_of(model)


def test_sd2_unet_is_refused(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    edit_json(model / "unet" / "config.json", cross_attention_dim=1024)
    msg = error_of(model)
    assert "2.x" in msg and "cross_attention_dim 1024" in msg and "CompVis/stable-diffusion-v1-4" in msg


def test_v_prediction_is_refused(tmp_path: Path, tiny: Path) -> None:
    model = fresh_copy(tiny, tmp_path / "m")
    edit_json(model / "scheduler" / "scheduler_config.json", prediction_type="v_prediction")
    assert "v_prediction" in error_of(model)


def test_adapter_not_matching_unet_is_refused(models_dir: Path, tiny: Path) -> None:
    msg = error_of(models_dir / "sd-v1-4", adapter=tiny / "adapter", weights=False)
    assert "channels" in msg and "TencentARC/t2iadapter_openpose_sd14v1" in msg


def test_nonexistent_path_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = error_of(tmp_path / "no" / "such" / "model")
    assert "no such folder" in msg and "hf download" in msg
    msg = error_of("vidtune-test-nobody/no-such-model")
    assert "vidtune-test-nobody/no-such-model" in msg and "HF_HUB_OFFLINE" in msg
    assert "not in the Hugging Face cache" in msg


def test_single_file_checkpoint_is_explained(tmp_path: Path) -> None:
    ckpt = tmp_path / "sd-v1-4.ckpt"
    ckpt.write_bytes(b"not really")
    assert "single-file checkpoint" in error_of(ckpt)


# ------------------------------------------------------------------ schedulers


def sd_alphas_cumprod() -> torch.Tensor:
    betas = np.linspace(np.sqrt(0.00085), np.sqrt(0.012), 1000, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas))


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_make_scheduler_keeps_sd_betas(name: str) -> None:
    sched = make_scheduler(name, sd_schedule_config())
    assert type(sched) is SCHEDULERS[name]
    torch.testing.assert_close(sched.alphas_cumprod.double(), sd_alphas_cumprod(), rtol=1e-5, atol=1e-6)
    assert sched.config.prediction_type == "epsilon"
    if name == "dpmpp":
        assert sched.config.algorithm_type == "dpmsolver++"
    sched.set_timesteps(10)
    assert len(sched.timesteps) == 10


def test_make_scheduler_from_real_sd_scheduler(real_meta: Components) -> None:
    ddim = make_scheduler("DDIM", real_meta.scheduler)
    torch.testing.assert_close(ddim.alphas_cumprod.double(), sd_alphas_cumprod(), rtol=1e-5, atol=1e-6)
    assert ddim.config.steps_offset == 1 and ddim.config.set_alpha_to_one is False
    assert real_meta.scheduler is not ddim


def test_sd_schedule_config_matches_sd14(models_dir: Path) -> None:
    real = json.loads((models_dir / "sd-v1-4" / "scheduler" / "scheduler_config.json").read_text())
    ours = sd_schedule_config()
    for key in (
        "beta_start",
        "beta_end",
        "beta_schedule",
        "num_train_timesteps",
        "set_alpha_to_one",
        "steps_offset",
        "clip_sample",
    ):
        assert ours[key] == real[key], key


def test_unknown_scheduler() -> None:
    with pytest.raises(VidtuneError, match="ddim"):
        make_scheduler("plms-ish", sd_schedule_config())


def test_offline_hub_id_loads_from_the_hf_cache(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--vidtune-test--tiny-sd"
    fresh_copy(tiny, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    comps = load_components("vidtune-test/tiny-sd", sam=None)
    assert comps.adapter is not None and comps.sources["model"] == "vidtune-test/tiny-sd"
    assert n_params(comps.unet) == n_params(load_components(tiny).unet)
    (repo / "snapshots" / commit / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert "diffusion_pytorch_model.safetensors" in error_of("vidtune-test/tiny-sd")
