"""Where a model comes from (a local folder, the HF cache or the hub; `HF_HUB_OFFLINE` respected), the
download command, and the checks of a folder before anything loads."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidtune.errors import VidtuneError
from vidtune.models.constants import (
    _HUB_ID,
    _SINGLE_FILE_SUFFIXES,
    _WEIGHTS,
    ADAPTER_REPO,
    SD_COMPONENTS,
    SD_REPO,
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
