"""Tuned UNet weights as a value: which tensors a tuning kind changes, and how they are saved, loaded,
applied to a UNet and undone (within `vidtune.models.Components.unet_with`). The library layer under
stage 3 (`vidtune.stages.tuning`, which makes them) and `vidtune.results` (which stores them).

Kinds (`tuning.trainable`): ``full`` (every UNet weight, saved as a diffusers folder), ``lora`` (the
peft adapter "vidtune" on the attention projections, saved in diffusers' LoRA file layout) and
``attention`` (the attn1/attn2 to_q weights by parameter name). Files: `vidtune.artifacts.TUNED_WEIGHTS`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.errors import VidtuneError

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

LORA_ADAPTER = "vidtune"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
# `tuning.lora_targets` -> peft target_modules (names match by suffix; a string is a full-name regex)
LORA_TARGET_SETS: dict[str, tuple[str, ...] | str] = {
    "attention": LORA_TARGETS,
    "cross_kv": r".*\.attn2\.(to_k|to_v)",
}
ATTENTION_Q = re.compile(r"\.attn[12]\.to_q\.weight$")


def lora_config(rank: int, targets: tuple[str, ...] | list[str] | str = LORA_TARGETS) -> Any:
    """peft LoraConfig of rank r with alpha = r (scale 1) on `targets` (peft's target_modules: names matched
    by suffix, or one full-name regex)."""
    from peft import LoraConfig

    modules = targets if isinstance(targets, str) else list(targets)
    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True, target_modules=modules)


def lora_modules(state: dict[str, torch.Tensor]) -> list[str]:
    """The module names a LoRA state adapts (its keys up to ".lora_A" / ".lora_B"), so that a saved adapter
    goes back onto exactly the projections it was trained on, whichever `tuning.lora_targets` made it."""
    return sorted({re.split(r"\.lora_[AB]\b", k)[0] for k in state if ".lora_" in k})


def tuned_state(unet: UNet2DConditionModel, kind: str) -> dict[str, torch.Tensor]:
    """Copies of the tuned tensors of `unet` by name: the whole UNet (in host memory: SD's is 3.4 GB),
    the LoRA "vidtune" adapter's weights (peft's names, without the adapter name) or the attn1/attn2 to_q
    weights. Copies, because the UNet goes back to its base weights when its tuning scope ends."""
    if kind == "full":
        return {n: p.detach().to("cpu", copy=True) for n, p in unet.state_dict().items()}
    if kind == "lora":
        from peft.utils import get_peft_model_state_dict

        return {n: p.detach().clone() for n, p in get_peft_model_state_dict(unet, adapter_name=LORA_ADAPTER).items()}
    return {n: p.detach().clone() for n, p in unet.named_parameters() if ATTENTION_Q.search(n)}


def save_state(
    kind: str, state: dict[str, torch.Tensor], lora_rank: int, stage_dir: Path, unet: UNet2DConditionModel | None = None
) -> Path:
    """Write tuned weights (see the module docstring for the files). "full" needs a `unet` of the same
    architecture: its config is saved beside the weights, as a diffusers folder."""
    if kind == "full":
        if unet is None:
            raise ValueError("saving a 'full' tuning result needs the UNet's config")
        from safetensors.torch import save_file

        with atomic.atomic_dir(stage_dir / A.TUNED_WEIGHTS["full"]) as tmp:
            unet.save_config(tmp)
            tensors = {k: v.contiguous() for k, v in state.items()}
            save_file(tensors, str(Path(tmp) / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    elif kind == "lora":
        atomic.write_safetensors(
            stage_dir / A.TUNED_WEIGHTS["lora"], {f"unet.{k}": v for k, v in state.items()}, metadata={"format": "pt"}
        )
        atomic.write_json(
            stage_dir / A.LORA_CONFIG, {"r": lora_rank, "lora_alpha": lora_rank, "target_modules": lora_modules(state)}
        )
    else:
        atomic.write_safetensors(stage_dir / A.TUNED_WEIGHTS["attention"], state)
    return stage_dir / A.TUNED_WEIGHTS[kind]


def load_state(stage_dir: Path, info: dict[str, Any]) -> tuple[str, dict[str, torch.Tensor], int]:
    """(kind, tuned tensors by name, LoRA rank) of a saved stage 3 (`info`: its tuning.json)."""
    from safetensors.torch import load_file

    kind = info.get("trainable")
    if kind not in A.TUNED_WEIGHTS:
        raise VidtuneError(f"{stage_dir / A.TUNING_INFO}: unknown trainable kind {kind!r}; rerun with --stages 3")
    path = stage_dir / A.TUNED_WEIGHTS[kind]
    if not path.exists():
        raise VidtuneError(f"{path}: missing (tuning.json says {kind!r}); rerun with --stages 3")
    if kind == "full":
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise VidtuneError(f"{path}: no .safetensors weights; rerun with --stages 3")
        return kind, {k: v for f in files for k, v in load_file(str(f)).items()}, 0
    if kind == "lora":
        rank = int(json.loads((stage_dir / A.LORA_CONFIG).read_text())["r"])
        return kind, {k.removeprefix("unet."): v for k, v in load_file(str(path)).items()}, rank
    return kind, load_file(str(path)), 0


def apply_state(unet: UNet2DConditionModel, kind: str, state: dict[str, torch.Tensor], lora_rank: int = 0) -> None:
    """Load tuned tensors into `unet` in place; afterwards it is frozen and in eval mode.

    Idempotent: full weights and to_q weights are overwritten, a LoRA adapter "vidtune" that is
    already there gets the weights instead of a second copy. So applying a result to the UNet that
    stage 3 just tuned, or twice, is fine. A 'full' or 'attention' result replaces base weights, so
    the untuned model comes back only by loading the base model again.
    """
    if kind == "full":
        missing, unexpected = unet.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise VidtuneError(
                f"stage 3's weights do not fit this UNet ({len(missing)} missing, {len(unexpected)} "
                f"unexpected, e.g. {(missing or unexpected)[0]}); rerun with --stages 3"
            )
    elif kind == "lora":
        from peft.utils import set_peft_model_state_dict

        if LORA_ADAPTER not in (getattr(unet, "peft_config", None) or {}):
            unet.add_adapter(lora_config(lora_rank, lora_modules(state)), adapter_name=LORA_ADAPTER)
        result = set_peft_model_state_dict(unet, state, adapter_name=LORA_ADAPTER)
        if getattr(result, "unexpected_keys", None):
            raise VidtuneError(
                f"stage 3's LoRA weights do not fit this UNet (e.g. {result.unexpected_keys[0]}); rerun with --stages 3"
            )
        unet.set_adapter(LORA_ADAPTER)
    else:
        params = dict(unet.named_parameters())
        bad = [n for n, w in state.items() if n not in params or params[n].shape != w.shape]
        if bad:
            raise VidtuneError(f"stage 3's weight {bad[0]} does not fit this UNet; rerun with --stages 3")
        with torch.no_grad():
            for name, w in state.items():
                params[name].copy_(w)
    unet.requires_grad_(False)
    unet.eval()


def scaled_state(
    kind: str, state: dict[str, torch.Tensor], base: dict[str, torch.Tensor], scale: float
) -> dict[str, torch.Tensor]:
    """The tuned tensors with `scale` of the tuning's change: a LoRA's up-projections (lora_B) times
    `scale` (its output W x + scale B A x, diffusers' LoRA scale), full or to_q weights interpolated from
    the base ones, base + scale (tuned - base) (WiSE-FT's weight interpolation). `base`: the
    `base_snapshot` of the same UNet (unused for a LoRA). Scale 1 returns `state` itself."""
    if scale == 1.0:
        return state
    if kind == "lora":
        return {k: v * scale if ".lora_B" in k else v for k, v in state.items()}
    missing = [k for k in state if k not in base]
    if missing:
        raise VidtuneError(f"stage 3's weight {missing[0]} has no base weight to scale from; rerun with --stages 3")
    return {k: base[k].to(v.device, v.dtype) + scale * (v - base[k].to(v.device, v.dtype)) for k, v in state.items()}


def base_snapshot(unet: UNet2DConditionModel, kind: str) -> dict[str, torch.Tensor]:
    """Copies (on the CPU) of the base weights that tuning `kind` will change, so that `restore_base` can
    give the base model back: every weight for "full", the to_q weights for "attention", none for "lora"
    (LoRA leaves the base weights alone)."""
    if kind == "lora":
        return {}
    names = None if kind == "full" else {n for n, _ in unet.named_parameters() if ATTENTION_Q.search(n)}
    return {n: p.detach().to("cpu", copy=True) for n, p in unet.state_dict().items() if names is None or n in names}


def restore_base(unet: UNet2DConditionModel, snapshot: dict[str, torch.Tensor]) -> None:
    """Undo a tuning: remove the LoRA adapter "vidtune" and write back the `base_snapshot` weights."""
    if LORA_ADAPTER in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(LORA_ADAPTER)
    if snapshot:
        params = unet.state_dict()
        with torch.no_grad():
            for name, w in snapshot.items():
                params[name].copy_(w)
    unet.requires_grad_(False)
    unet.eval()


class TunedWeights(Protocol):
    """Tuned weights as a value (`vidtune.results.TuningResult`): their kind, tensors and LoRA rank,
    applied within `vidtune.models.Components.unet_with`."""

    kind: str
    state: dict[str, torch.Tensor]
    lora_rank: int
