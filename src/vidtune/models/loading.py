"""`load_components`: SD 1.x, the T2I-Adapter and SAM loaded with diffusers and transformers, from
safetensors (pickle only when asked), in the run's device and dtype."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from vidtune.errors import VidtuneError
from vidtune.models.components import (
    Components,
)
from vidtune.models.constants import (
    ADAPTER_REPO,
    SAM_REPO,
    SD_COMPONENTS,
    SD_REPO,
)
from vidtune.models.sources import (
    ModelSource,
    _check_adapter,
    _check_component_folder,
    _check_index,
    _check_sd1,
    _check_sd_folder,
    _download_hint,
    _offline,
    resolve_source,
)

# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _dtype_kw(dtype: torch.dtype) -> dict[str, Any]:
    """transformers >= 4.56 calls it `dtype`; earlier versions `torch_dtype`."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _wrap(what: str, ref: str, fix: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a from_pretrained-like ``fn``; turn any failure into one VidtuneError line."""
    try:
        return fn(*args, **kwargs)
    except VidtuneError:
        raise
    except Exception as e:  # the boundary: whatever diffusers/transformers/hub raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VidtuneError(f"{ref}: could not load the {what} ({type(e).__name__}: {first}); {fix}") from e


def _load_config(cls: Any, ref: str, subfolder: str | None, what: str, fix: str, local_only: bool) -> dict[str, Any]:
    kw: dict[str, Any] = {"local_files_only": local_only}
    if subfolder:
        kw["subfolder"] = subfolder
    cfg = _wrap(f"{what} config", ref, fix, cls.load_config, ref, **kw)
    return dict(cfg)


def _build_empty(cls: Any, config: Any) -> Any:
    """The architecture with parameters on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        if hasattr(cls, "from_config"):
            return cls.from_config(config)
        return cls(config)


def load_components(
    model: str | os.PathLike[str],
    adapter: str | os.PathLike[str] | None = None,
    sam: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_pickle: bool = False,
    weights: bool = True,
) -> Components:
    """Load an SD 1.x model (+ optional T2I-Adapter and SAM) from hub ids, local folders or the HF cache.

    ``adapter=None`` uses ``<model>/adapter`` when that folder exists, else no adapter; likewise
    ``sam=None`` uses ``<model>/sam``. Weights load as safetensors only unless ``allow_pickle``.
    unet, text encoder, adapter and SAM get ``dtype``; the VAE stays float32 (SD's VAE overflows in
    fp16). Every model is in eval mode with gradients off (training code turns on what it trains).
    ``weights=False`` builds every architecture from its config on the meta device without reading
    weights (inspection, parameter counts); the same checks run, weight files are not required.
    With HF_HUB_OFFLINE=1 a hub id is looked up in the HF cache and checked like a local folder.
    Raises VidtuneError naming the missing or wrong part and how to fix it.
    """
    opts = _LoadOptions(dtype=dtype, allow_pickle=allow_pickle, weights=weights, local_only=_offline())
    # 1. Check everything before loading anything.
    sd = resolve_source(model, "Stable Diffusion model", SD_REPO, "model_index.json")
    plan = _plan_sd(sd, opts)
    if adapter is None and sd.local is not None and (sd.local / "adapter").is_dir():
        adapter = sd.local / "adapter"
    if sam is None and sd.local is not None and (sd.local / "sam").is_dir():
        sam = sd.local / "sam"
    ad_src = resolve_source(adapter, "T2I-Adapter", ADAPTER_REPO, "config.json") if adapter is not None else None
    sam_src = resolve_source(sam, "SAM model", SAM_REPO, "config.json") if sam is not None else None
    ad_plan = _plan_adapter(ad_src, plan, opts) if ad_src is not None else None
    sam_kw = _plan_sam(sam_src, opts) if sam_src is not None else None

    # 2. Load.
    unet, vae, text_encoder, tokenizer = _load_sd(sd, plan, opts)
    ad_model = _load_adapter(ad_src, ad_plan, opts) if ad_src is not None else None
    sam_model, sam_processor = _load_sam(sam_src, sam_kw, opts) if sam_src is not None else (None, None)

    # 3. Place: from_pretrained already gave each model its dtype; only move it.
    dev = torch.device(device) if weights else torch.device("meta")
    for m in (unet, vae, text_encoder, ad_model, sam_model):
        if m is not None:
            if weights:
                m.to(dev)
            m.eval()
            m.requires_grad_(False)
    sources = {"model": sd.name}
    sources.update({k: s.name for k, s in (("adapter", ad_src), ("sam", sam_src)) if s is not None})
    return Components(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=_scheduler_from_config(plan.scheduler),
        adapter=ad_model,
        sam_model=sam_model,
        sam_processor=sam_processor,
        device=dev,
        dtype=dtype,
        sources=sources,
    )


@dataclass(frozen=True)
class _LoadOptions:
    dtype: torch.dtype
    allow_pickle: bool
    weights: bool
    local_only: bool

    def hub_kwargs(self) -> dict[str, Any]:
        """from_pretrained weight kwargs for a hub id (no folder to check beforehand)."""
        return {"use_safetensors": None if self.allow_pickle else True} if self.weights else {}


@dataclass(frozen=True)
class _SdPlan:
    """The checked configs of an SD folder and the from_pretrained kwargs of each weighted part."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: Any  # CLIPTextConfig
    scheduler: dict[str, Any]
    kwargs: dict[str, dict[str, Any]]

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.get("block_out_channels", [0] * 4)) - 1)


_SD_FIX = f"check the folder or download it with {_download_hint(SD_REPO)}"
_ADAPTER_FIX = f"check the folder or download it with {_download_hint(ADAPTER_REPO)}"
_SAM_FIX = f"check the folder or download it with {_download_hint(SAM_REPO)}"


def _plan_sd(sd: ModelSource, opts: _LoadOptions) -> _SdPlan:
    from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig

    if sd.local is not None:
        kwargs = _check_sd_folder(sd.local, opts.allow_pickle, opts.weights)
    else:
        kwargs = {c: opts.hub_kwargs() for c in SD_COMPONENTS}
        _check_index(
            _wrap(
                "model index", sd.ref, _SD_FIX, DiffusionPipeline.load_config, sd.ref, local_files_only=opts.local_only
            ),
            sd.ref,
        )
    unet = _load_config(UNet2DConditionModel, sd.ref, "unet", "UNet", _SD_FIX, opts.local_only)
    vae = _load_config(AutoencoderKL, sd.ref, "vae", "VAE", _SD_FIX, opts.local_only)
    sched = _load_config(DDIMScheduler, sd.ref, "scheduler", "scheduler", _SD_FIX, opts.local_only)
    text = _wrap(
        "text encoder config",
        sd.ref,
        _SD_FIX,
        CLIPTextConfig.from_pretrained,
        sd.ref,
        subfolder="text_encoder",
        local_files_only=opts.local_only,
    )
    _check_sd1(unet, vae, text.to_dict(), sched, sd.ref)
    return _SdPlan(unet=unet, vae=vae, text_encoder=text, scheduler=sched, kwargs=kwargs)


def _plan_adapter(src: ModelSource, sd: _SdPlan, opts: _LoadOptions) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, from_pretrained kwargs) of a checked T2I-Adapter."""
    from diffusers import T2IAdapter

    kw = (
        _check_component_folder(src.local, "adapter", ADAPTER_REPO, opts.allow_pickle, opts.weights)
        if src.local is not None
        else opts.hub_kwargs()
    )
    cfg = _load_config(T2IAdapter, src.ref, None, "T2I-Adapter", _ADAPTER_FIX, opts.local_only)
    _check_adapter(cfg, sd.unet, sd.vae_factor, src.ref)
    return cfg, kw


def _plan_sam(src: ModelSource, opts: _LoadOptions) -> dict[str, Any]:
    if src.local is None:
        return opts.hub_kwargs()
    return _check_component_folder(
        src.local,
        "sam",
        SAM_REPO,
        opts.allow_pickle,
        opts.weights,
        extra=[("preprocessor_config.json", "processor_config.json")],
    )


def _load_sd(sd: ModelSource, plan: _SdPlan, opts: _LoadOptions) -> tuple[Any, Any, Any, Any]:
    """(unet, vae, text_encoder, tokenizer); the VAE in float32."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    local = {"local_files_only": opts.local_only}
    tokenizer = _wrap(
        "tokenizer", sd.ref, _SD_FIX, CLIPTokenizer.from_pretrained, sd.ref, subfolder="tokenizer", **local
    )
    if not opts.weights:
        return (
            _build_empty(UNet2DConditionModel, plan.unet),
            _build_empty(AutoencoderKL, plan.vae),
            _build_empty(CLIPTextModel, plan.text_encoder),
            tokenizer,
        )
    unet = _wrap(
        "UNet",
        sd.ref,
        _SD_FIX,
        UNet2DConditionModel.from_pretrained,
        sd.ref,
        subfolder="unet",
        torch_dtype=opts.dtype,
        **plan.kwargs["unet"],
        **local,
    )
    vae = _wrap(
        "VAE",
        sd.ref,
        _SD_FIX,
        AutoencoderKL.from_pretrained,
        sd.ref,
        subfolder="vae",
        torch_dtype=torch.float32,
        **plan.kwargs["vae"],
        **local,
    )
    with _no_weight_loading_bar(enabled=sd.local is not None):  # a download keeps its bar
        text_encoder = _wrap(
            "text encoder",
            sd.ref,
            _SD_FIX,
            CLIPTextModel.from_pretrained,
            sd.ref,
            subfolder="text_encoder",
            **_dtype_kw(opts.dtype),
            **plan.kwargs["text_encoder"],
            **local,
        )
    return unet, vae, text_encoder, tokenizer


@contextlib.contextmanager
def _no_weight_loading_bar(enabled: bool = True):
    """Hide transformers' per-tensor "Loading weights" bar (noise in the CLI output)."""
    from transformers.utils import logging as hf_logging

    if not enabled:
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_adapter(src: ModelSource, plan: tuple[dict[str, Any], dict[str, Any]], opts: _LoadOptions) -> Any:
    from diffusers import T2IAdapter

    cfg, kw = plan
    if not opts.weights:
        return _build_empty(T2IAdapter, cfg)
    return _wrap(
        "T2I-Adapter",
        src.ref,
        _ADAPTER_FIX,
        T2IAdapter.from_pretrained,
        src.ref,
        torch_dtype=opts.dtype,
        local_files_only=opts.local_only,
        **kw,
    )


def _load_sam(src: ModelSource, kw: dict[str, Any], opts: _LoadOptions) -> tuple[Any, Any]:
    """(SamModel, SamProcessor)."""
    from transformers import SamConfig, SamModel, SamProcessor

    local = {"local_files_only": opts.local_only}
    processor = _wrap("SAM processor", src.ref, _SAM_FIX, SamProcessor.from_pretrained, src.ref, **local)
    if not opts.weights:
        cfg = _wrap("SAM config", src.ref, _SAM_FIX, SamConfig.from_pretrained, src.ref, **local)
        return _build_empty(SamModel, cfg), processor
    model = _wrap(
        "SAM model", src.ref, _SAM_FIX, SamModel.from_pretrained, src.ref, **_dtype_kw(opts.dtype), **kw, **local
    )
    return model, processor


def _scheduler_from_config(config: Mapping[str, Any]) -> Any:
    """The scheduler class the config names (any diffusers scheduler), built from it."""
    import diffusers
    from diffusers import DDIMScheduler
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        cls = DDIMScheduler
    return cls.from_config(dict(config))
