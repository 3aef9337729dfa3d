"""Tuned UNet weights as a value: which tensors a tuning kind changes, and how they are saved, loaded,
applied to a UNet and undone, and which of them a UNet carries (`UnetWeights`, kept by
`vidtune.models.Components`). The library layer under stage 3 (`vidtune.stages.tuning`, which makes
them) and `vidtune.results` (which stores them), so that neither imports the other for them.

Kinds (`tuning.trainable`): ``full`` (every UNet weight, saved as a diffusers folder), ``lora`` (the
peft adapter "vidtune" on the attention projections, saved in diffusers' LoRA file layout) and
``attention`` (the attn1/attn2 to_q weights by parameter name). Files: `vidtune.artifacts.TUNED_WEIGHTS`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
ATTENTION_Q = re.compile(r"\.attn[12]\.to_q\.weight$")


def lora_config(rank: int) -> Any:
    """peft LoraConfig of rank r with alpha = r (scale 1) on the attention projections."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True, target_modules=list(LORA_TARGETS))


def tuned_state(unet: UNet2DConditionModel, kind: str) -> dict[str, torch.Tensor]:
    """The tuned tensors of `unet` by name (not copies): the whole UNet, the LoRA "vidtune" adapter's
    weights (peft's names, without the adapter name) or the attn1/attn2 to_q weights."""
    if kind == "full":
        return {n: p.detach() for n, p in unet.state_dict().items()}
    if kind == "lora":
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(unet, adapter_name=LORA_ADAPTER)
    return {n: p for n, p in unet.named_parameters() if ATTENTION_Q.search(n)}


def save_state(
    kind: str, state: dict[str, torch.Tensor], lora_rank: int, stage_dir: Path, unet: UNet2DConditionModel | None = None
) -> Path:
    """Write tuned weights (see the module docstring for the files). "full" needs the `unet` (its
    config is saved with the weights, as a diffusers folder)."""
    if kind == "full":
        if unet is None:
            raise ValueError("saving a 'full' tuning result needs the tuned UNet")
        with atomic.atomic_dir(stage_dir / A.TUNED_WEIGHTS["full"]) as tmp:
            unet.save_pretrained(tmp, safe_serialization=True)
    elif kind == "lora":
        atomic.write_safetensors(
            stage_dir / A.TUNED_WEIGHTS["lora"], {f"unet.{k}": v for k, v in state.items()}, metadata={"format": "pt"}
        )
        atomic.write_json(
            stage_dir / A.LORA_CONFIG, {"r": lora_rank, "lora_alpha": lora_rank, "target_modules": list(LORA_TARGETS)}
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
            unet.add_adapter(lora_config(lora_rank), adapter_name=LORA_ADAPTER)
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


# --------------------------------------------------------------------------------------------
# Which weights a UNet carries (`Components.carry` and `Components.tuning_unet` own this state)
# --------------------------------------------------------------------------------------------

UNFINISHED = "an unfinished tuning"  # what a UNet carries while stage 3 tunes it (and after a failed stage 3)


class TunedWeights(Protocol):
    """Tuned weights as a value (`vidtune.results.TuningResult`): their kind, tensors, LoRA rank and a
    key naming them (the stage3/ folder they are saved in, or an in-memory result's id)."""

    kind: str
    state: dict[str, torch.Tensor]
    lora_rank: int

    @property
    def key(self) -> str: ...


@dataclass(frozen=True)
class UnetWeights:
    """What a UNet carries: `carries` names the tuned weights in it (a `TunedWeights.key`, `UNFINISHED`,
    or None for the base model) of kind `kind`; `base` holds CPU copies of the base weights that tuning
    replaced (`base_snapshot`), or None when they were not kept (then the tuned UNet stays tuned)."""

    carries: str | None = None
    kind: str | None = None
    base: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def switch_unet(
    unet: UNet2DConditionModel, now: UnetWeights, tuned: TunedWeights | None, keep_base: bool = False
) -> UnetWeights:
    """Make `unet` carry `tuned` (or the base model, `tuned` None) and return what it carries then.

    Nothing is done when it carries them already. Another tuning is undone from the kept base weights;
    without them the base model cannot come back (an error: load the model again), and tuned weights of
    another kind cannot replace it (they would mix). Going from the base model to `tuned` keeps the
    base weights it replaces when `keep_base` (a LoRA always: removing the adapter costs no copy)."""
    key = None if tuned is None else tuned.key
    if now.carries == key:
        return now
    if now.carries is not None:
        if now.base is not None:
            restore_base(unet, now.base)
            now = UnetWeights(base=now.base)
        elif tuned is None:
            raise VidtuneError(
                f"the loaded UNet was tuned by {now.carries}; load the model again to run on the base model"
            )
        elif tuned.kind != now.kind:
            raise VidtuneError(
                f"the loaded UNet carries a {now.kind!r} tuning ({now.carries}) and its base weights were not "
                f"kept, so a {tuned.kind!r} tuning cannot replace it; load the model again"
            )
    if tuned is None:
        return now
    base = now.base
    if now.carries is None:
        base = base_snapshot(unet, tuned.kind) if keep_base or tuned.kind == "lora" else None
    apply_state(unet, tuned.kind, tuned.state, tuned.lora_rank)
    return UnetWeights(carries=key, kind=tuned.kind, base=base)


def begin_tuning(unet: UNet2DConditionModel, now: UnetWeights, kind: str, keep_base: bool) -> UnetWeights:
    """The base model back in `unet` (`switch_unet`), about to be tuned in place as `kind`: its base
    weights kept when `keep_base` (a LoRA always); it carries `UNFINISHED` until the tuning is done."""
    now = switch_unet(unet, now, None)
    base = base_snapshot(unet, kind) if keep_base or kind == "lora" else None
    return UnetWeights(carries=UNFINISHED, kind=kind, base=base)
