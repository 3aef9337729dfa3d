"""Load Stable Diffusion 1.x components, the T2I-Adapter and SAM (tiny random ones: `vidtune.testing`).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.models`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vidtune.errors import VidtuneError
from vidtune.tuned_weights import TunedWeights, UnetWeights, begin_tuning, switch_unet

SD_REPO = "CompVis/stable-diffusion-v1-4"
ADAPTER_REPO = "TencentARC/t2iadapter_openpose_sd14v1"
SAM_REPO = "facebook/sam-vit-base"

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

# Weight file names: (safetensors names, pickle names), single file first, then a sharded index.
_DIFFUSERS_WEIGHTS = (
    ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json"),
)
_TRANSFORMERS_WEIGHTS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
_WEIGHTS = {
    "unet": _DIFFUSERS_WEIGHTS,
    "vae": _DIFFUSERS_WEIGHTS,
    "adapter": _DIFFUSERS_WEIGHTS,
    "text_encoder": _TRANSFORMERS_WEIGHTS,
    "sam": _TRANSFORMERS_WEIGHTS,
}
_SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")

# --------------------------------------------------------------------------------------------
# Schedulers
# --------------------------------------------------------------------------------------------


def _scheduler_registry() -> dict[str, Any]:
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    return {
        "ddim": DDIMScheduler,
        "ddpm": DDPMScheduler,
        "euler": EulerDiscreteScheduler,
        "dpmpp": DPMSolverMultistepScheduler,
    }


SCHEDULERS: dict[str, Any] = _scheduler_registry()
"""Sampling schedulers by config name; `make_scheduler` builds one from a base config."""

_SCHEDULER_OPTIONS: dict[str, dict[str, Any]] = {"dpmpp": {"algorithm_type": "dpmsolver++"}}


def sd_schedule_config(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    beta_schedule: str = "scaled_linear",
    num_train_timesteps: int = 1000,
) -> dict[str, Any]:
    """Stable Diffusion v1-4's training schedule as a diffusers scheduler config dict.

    scaled_linear: betas = linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2. The other keys are those
    of SD v1-4's scheduler_config.json (set_alpha_to_one False, steps_offset 1, clip_sample False).
    """
    return {
        "beta_start": beta_start,
        "beta_end": beta_end,
        "beta_schedule": beta_schedule,
        "num_train_timesteps": num_train_timesteps,
        "trained_betas": None,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "clip_sample": False,
        "prediction_type": "epsilon",
    }


def make_scheduler(name: str, config: Mapping[str, Any] | Any) -> Any:
    """A fresh scheduler of kind ``name`` (a `SCHEDULERS` key) from a base scheduler config.

    ``config`` is a config dict or a scheduler (its ``.config`` is used); the beta schedule, number of
    training steps and prediction type carry over. "dpmpp" is DPM-Solver++ (multistep).
    """
    key = name.lower()
    if key not in SCHEDULERS:
        raise VidtuneError(f"unknown scheduler {name!r}: choose one of {', '.join(sorted(SCHEDULERS))}")
    base = getattr(config, "config", config)
    return SCHEDULERS[key].from_config(dict(base), **_SCHEDULER_OPTIONS.get(key, {}))


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


@dataclass
class Components:
    """The loaded models of one run. The VAE is always float32 (decoding in half precision
    overflows on SD's VAE); unet, text encoder, adapter and SAM have ``dtype``."""

    vae: Any  # diffusers.AutoencoderKL
    unet: Any  # diffusers.UNet2DConditionModel
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    scheduler: Any  # the folder's diffusers scheduler
    adapter: Any | None = None  # diffusers.T2IAdapter
    sam_model: Any | None = None  # transformers.SamModel
    sam_processor: Any | None = None  # transformers.SamProcessor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    sources: dict[str, str] = field(default_factory=dict)
    # Which tuned weights the UNet carries and the base weights to go back to: changed only by `carry`
    # and `tuning_unet` (a copy made with `dataclasses.replace` starts from the base model).
    _weights: UnetWeights = field(default_factory=UnetWeights, init=False, repr=False, compare=False)

    @property
    def tuned_by(self) -> str | None:
        """The key of the tuned weights the UNet carries (a stage3/ folder, an in-memory result's id, or
        `tuned_weights.UNFINISHED`); None while it is the base model."""
        return self._weights.carries

    def carry(self, tuned: TunedWeights | None, keep_base: bool = False) -> Any:
        """Make the UNet carry `tuned` (None: the base model) and return it. Not a scope: the UNet keeps
        them until the next `carry`, and switching loads weights only when it carries others
        (`tuned_weights.switch_unet`), so consecutive stages on one set pay nothing. `keep_base`: keep
        the base weights a full or attention tuning replaces, so that a later ``carry(None)`` can restore
        them (costs a copy in host memory)."""
        self._weights = switch_unet(self.unet, self._weights, tuned, keep_base)
        return self.unet

    @contextlib.contextmanager
    def tuning_unet(self, kind: str, keep_base: bool = False) -> Iterator[Callable[[TunedWeights], None]]:
        """``with components.tuning_unet(kind) as tuned:`` the base UNet, to tune in place as `kind` in the
        block, which calls ``tuned(result)`` once the UNet carries the result; a block that stops before
        leaves a UNet that carries an unfinished tuning (undone from the base weights when kept)."""
        self._weights = begin_tuning(self.unet, self._weights, kind, keep_base)
        base = self._weights.base

        def tuned(result: TunedWeights) -> None:
            self._weights = UnetWeights(carries=result.key, kind=result.kind, base=base)

        yield tuned

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel along one side (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of a latent (4 for SD)."""
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        """Latent scale: z = scaling_factor * vae.encode(x).latent_dist.sample() (0.18215 for SD)."""
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))


def _count(module: Any) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def describe(components: Components) -> str:
    """One line: parameter counts per model, dtype and device."""
    parts = [
        f"unet {_count(components.unet)}",
        f"vae {_count(components.vae)}",
        f"text_encoder {_count(components.text_encoder)}",
    ]
    if components.adapter is not None:
        parts.append(f"adapter {_count(components.adapter)}")
    if components.sam_model is not None:
        parts.append(f"sam {_count(components.sam_model)}")
    dtype = str(components.dtype).removeprefix("torch.")
    return (
        f"{', '.join(parts)} parameters; {dtype} (vae float32) on {components.device}; "
        f"scheduler {type(components.scheduler).__name__}; latent x{components.vae_scale_factor}, "
        f"{components.latent_channels} channels"
    )


# --------------------------------------------------------------------------------------------
# Resolving and checking sources
# --------------------------------------------------------------------------------------------


def _offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or as huggingface_hub read it at import."""
    truthy = {"1", "ON", "YES", "TRUE"}
    if any(os.environ.get(v, "").upper() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old huggingface_hub
        return False


# What `download_command` fetches: configs, tokenizer files and the safetensors weights vidtune loads;
# not the fp16 / non-EMA duplicates, pickles, single-file checkpoints or SD's safety checker.
DOWNLOAD_INCLUDE = ("*.json", "*.txt", "*.safetensors")
DOWNLOAD_EXCLUDE = ("*.fp16.*", "*non_ema*", "*.ckpt", "safety_checker/*")


def download_command(repo: str, local_dir: str = "DIR") -> str:
    """The shell command (huggingface_hub's `hf`, installed with vidtune) that fetches just what
    vidtune loads of hub repository ``repo`` into ``local_dir``."""
    include = " ".join(f'--include "{p}"' for p in DOWNLOAD_INCLUDE)
    exclude = " ".join(f'--exclude "{p}"' for p in DOWNLOAD_EXCLUDE)
    return f"hf download {repo} {include} {exclude} --local-dir {local_dir}"


def _download_hint(repo: str) -> str:
    return f"`{download_command(repo)}`"


@dataclass(frozen=True)
class ModelSource:
    """Where one model comes from (`resolve_source`): a local folder (checked) or a hub id (downloaded by
    from_pretrained)."""

    name: str  # what the user passed
    local: Path | None  # a folder on disk (user folder or HF cache snapshot)

    @property
    def ref(self) -> str:
        return str(self.local) if self.local is not None else self.name


def cached_snapshot(name: str, probe: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of hub id `name` that holds the file `probe`, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, probe)
    except Exception:  # not a repo id, no cache
        return None
    return Path(cached).parents[probe.count("/")] if isinstance(cached, str) else None


def local_folder(source: str | os.PathLike[str], probe: str) -> Path | None:
    """The folder of `source` on disk: the one `resolve_source` gives the loader (a folder, or offline the
    cached snapshot), and for a hub id the loader lets from_pretrained fetch online, the cached snapshot
    it reuses when the hub has nothing newer. None when nothing is on disk or the source is wrong (the
    loader then says why). The run's resume key (`vidtune.fingerprint`) and `vidtune plan` read this."""
    if not os.fspath(source):
        return None
    try:
        found = resolve_source(source, "model", SD_REPO, probe)
    except VidtuneError:
        return None
    return found.local if found.local is not None else cached_snapshot(found.name, probe)


def resolve_source(source: str | os.PathLike[str], what: str, repo: str, probe: str) -> ModelSource:
    """Find ``source`` as a local folder, a cached hub snapshot (offline), or a hub id to download (the
    loader's resolver; `local_folder` is the same for those who only look)."""
    name = os.fspath(source)
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSource(name, path)
    if path.is_file():
        if path.suffix in _SINGLE_FILE_SUFFIXES:
            raise VidtuneError(
                f"{path}: is a single-file checkpoint; vidtune reads the diffusers folder layout of the {what}: "
                f"download it with {_download_hint(repo)} (or convert the file with diffusers' "
                f"`from_single_file(...).save_pretrained(DIR)`)"
            )
        raise VidtuneError(f"{path}: is a file, expected the {what} folder; get one with {_download_hint(repo)}")
    if _HUB_ID.match(name) and not name.startswith("."):
        if not _offline():
            return ModelSource(name, None)  # from_pretrained downloads (or reuses the cache) and checks for updates
        cached = cached_snapshot(name, probe)
        if cached is not None:  # offline: check and load the cached snapshot like a local folder
            return ModelSource(name, cached)
        raise VidtuneError(
            f"{name}: the {what} is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE=1: "
            f"download it with {_download_hint(name if '/' in name else repo)} and pass DIR, or unset HF_HUB_OFFLINE"
        )
    raise VidtuneError(f"{path}: no such folder for the {what}; get it with {_download_hint(repo)}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VidtuneError(f"{path}: cannot read this JSON file ({e}); re-download the model folder") from e


def _find_weights(folder: Path, kind: str, allow_pickle: bool, repo: str) -> dict[str, Any]:
    """from_pretrained kwargs (use_safetensors, variant) for the weights in ``folder``; raise if none usable."""
    safe_names, pickle_names = _WEIGHTS[kind]
    if any((folder / n).is_file() for n in safe_names):
        return {"use_safetensors": True}
    if allow_pickle and any((folder / n).is_file() for n in pickle_names):
        return {"use_safetensors": False}
    # Variant files such as diffusion_pytorch_model.fp16.safetensors.
    stem, _ = safe_names[0].split(".", 1)
    variants = sorted(p.name.split(".")[1] for p in folder.glob(f"{stem}.*.safetensors") if p.name.count(".") == 2)
    if variants:
        return {"use_safetensors": True, "variant": variants[0]}
    pickled = [n for n in pickle_names if (folder / n).is_file()] + sorted(p.name for p in folder.glob("*.ckpt"))
    if pickled:
        raise VidtuneError(
            f"{folder}: has only pickle weights ({pickled[0]}), which can run code when loaded: pass --allow-pickle "
            f"(allow_pickle=True) if you trust this file, or download the safetensors with {_download_hint(repo)}"
        )
    raise VidtuneError(f"{folder}: no weights ({safe_names[0]}); download them with {_download_hint(repo)}")


def model_index(adapter: bool = False) -> dict[str, Any]:
    """The model_index.json of an SD 1.x folder that vidtune writes (the tiny test models, the demo export):
    diffusers' StableDiffusionPipeline, or StableDiffusionAdapterPipeline with an ``adapter/`` folder."""
    import diffusers

    index: dict[str, Any] = {
        "_class_name": "StableDiffusionAdapterPipeline" if adapter else "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if adapter:
        index["adapter"] = ["diffusers", "T2IAdapter"]
    else:
        index["image_encoder"] = [None, None]
    return dict(sorted(index.items()))


def _check_sd_folder(root: Path, allow_pickle: bool, weights: bool) -> dict[str, dict[str, Any]]:
    """Check an SD 1.x diffusers folder before loading; return from_pretrained kwargs per component."""
    hint = _download_hint(SD_REPO)
    index_path = root / "model_index.json"
    if not index_path.is_file():
        singles = sorted(p.name for p in root.iterdir() if p.suffix in _SINGLE_FILE_SUFFIXES)
        extra = (
            f" (found {singles[0]}: single-file checkpoints are not read; convert with diffusers' "
            f"`from_single_file(...).save_pretrained(DIR)`)"
            if singles
            else ""
        )
        raise VidtuneError(
            f"{root}: no model_index.json, so not a diffusers Stable Diffusion folder{extra}; download one with {hint}"
        )
    index = _read_json(index_path)
    _check_index(index, index_path)
    missing = [c for c in SD_COMPONENTS if not (root / c).is_dir()]
    if missing:
        raise VidtuneError(
            f"{root}: missing component folder(s) {', '.join(m + '/' for m in missing)}; "
            f"download the whole model with {hint}"
        )
    configs = {
        "unet": "config.json",
        "vae": "config.json",
        "text_encoder": "config.json",
        "scheduler": "scheduler_config.json",
    }
    for comp, fname in configs.items():
        if not (root / comp / fname).is_file():
            raise VidtuneError(f"{root / comp}: no {fname}; download the model again with {hint}")
    tok = root / "tokenizer"
    has_bpe = (tok / "vocab.json").is_file() and (tok / "merges.txt").is_file()
    if not has_bpe and not (tok / "tokenizer.json").is_file():
        raise VidtuneError(f"{tok}: no vocab.json/merges.txt (CLIP tokenizer files); download them with {hint}")
    kwargs: dict[str, dict[str, Any]] = {c: {} for c in SD_COMPONENTS}
    if weights:
        for comp in ("unet", "vae", "text_encoder"):
            kwargs[comp] = _find_weights(root / comp, comp, allow_pickle, SD_REPO)
    return kwargs


def _check_index(index: Mapping[str, Any], where: Path | str) -> None:
    cls = str(index.get("_class_name", ""))
    if "XL" in cls or "text_encoder_2" in index:
        raise VidtuneError(
            f"{where}: this is an SDXL model ({cls or 'text_encoder_2'}); vidtune needs Stable "
            f"Diffusion 1.x: use e.g. {SD_REPO} ({_download_hint(SD_REPO)})"
        )
    if cls and not cls.startswith("StableDiffusion") or re.match(r"StableDiffusion\d", cls):
        raise VidtuneError(
            f"{where}: model_index.json names {cls}, not a Stable Diffusion 1.x pipeline; "
            f"use e.g. {SD_REPO} ({_download_hint(SD_REPO)})"
        )


def _check_sd1(
    unet_cfg: Mapping[str, Any],
    vae_cfg: Mapping[str, Any],
    text_cfg: Mapping[str, Any],
    sched_cfg: Mapping[str, Any],
    where: str,
) -> None:
    """Raise unless the configs describe an SD 1.x-style model (epsilon, CLIP-L style conditioning)."""
    fix = f"vidtune needs Stable Diffusion 1.x: use e.g. {SD_REPO} ({_download_hint(SD_REPO)})"
    cross = unet_cfg.get("cross_attention_dim")
    if cross == 2048 or unet_cfg.get("addition_embed_type") == "text_time":
        raise VidtuneError(f"{where}/unet: this is an SDXL UNet (cross_attention_dim {cross}); {fix}")
    if cross == 1024:
        raise VidtuneError(f"{where}/unet: this is a Stable Diffusion 2.x UNet (cross_attention_dim 1024); {fix}")
    if sched_cfg.get("prediction_type", "epsilon") != "epsilon":
        raise VidtuneError(
            f"{where}/scheduler: prediction_type is {sched_cfg.get('prediction_type')!r} "
            f"(a Stable Diffusion 2.x v-model); {fix}"
        )
    latent = vae_cfg.get("latent_channels", 4)
    if unet_cfg.get("in_channels", 4) != latent:
        raise VidtuneError(
            f"{where}/unet: in_channels {unet_cfg.get('in_channels')} != the VAE's latent_channels "
            f"{latent} (an inpainting or depth model?); {fix}"
        )
    hidden = text_cfg.get("hidden_size")
    if hidden is not None and cross is not None and hidden != cross:
        raise VidtuneError(
            f"{where}: text_encoder hidden_size {hidden} != unet cross_attention_dim {cross}; "
            f"the folder mixes models; {fix}"
        )


def _check_adapter(adapter_cfg: Mapping[str, Any], unet_cfg: Mapping[str, Any], vae_factor: int, where: str) -> None:
    """The adapter's features must land on the UNet's down blocks: same channels, same downscale as the VAE."""
    fix = f"use an SD 1.x T2I-Adapter such as {ADAPTER_REPO} ({_download_hint(ADAPTER_REPO)})"
    kind = adapter_cfg.get("adapter_type", "full_adapter")
    if kind == "full_adapter_xl":
        raise VidtuneError(f"{where}: this is an SDXL T2I-Adapter (full_adapter_xl); {fix}")
    channels = list(adapter_cfg.get("channels", [320, 640, 1280, 1280]))
    unet_channels = list(unet_cfg.get("block_out_channels", []))
    if kind == "full_adapter" and channels != unet_channels:
        raise VidtuneError(
            f"{where}: adapter channels {channels} do not match the UNet's block_out_channels {unet_channels}; {fix}"
        )
    down = adapter_cfg.get("downscale_factor", 8)
    if down != vae_factor:
        raise VidtuneError(
            f"{where}: adapter downscale_factor {down} != the VAE's factor {vae_factor}, so its "
            f"features miss the UNet's resolutions; {fix}"
        )


def _check_component_folder(
    folder: Path, kind: str, repo: str, allow_pickle: bool, weights: bool, extra: Iterable[tuple[str, ...]] = ()
) -> dict[str, Any]:
    hint = _download_hint(repo)
    if not (folder / "config.json").is_file():
        raise VidtuneError(f"{folder}: no config.json, so not a {kind} folder; download one with {hint}")
    for names in extra:
        if not any((folder / n).is_file() for n in names):
            raise VidtuneError(f"{folder}: no {names[0]}; download the {kind} with {hint}")
    return _find_weights(folder, kind, allow_pickle, repo) if weights else {}


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
