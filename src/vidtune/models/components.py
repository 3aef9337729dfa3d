"""`Components`: the loaded models of one run, and the scopes in which its UNet carries tuned weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vidtune.tuned_weights import TunedWeights, apply_state, base_snapshot, restore_base, scaled_state

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

    @contextlib.contextmanager
    def unet_with(self, tuned: TunedWeights | None, scale: float = 1.0) -> Iterator[Any]:
        """``with components.unet_with(tuned) as unet:`` the UNet carrying `tuned` (None: the base model)
        within the block, and the base model again after it, however the block ends. Outside these
        scopes the UNet is always the base model. Entering copies the base weights the tuning replaces
        (`tuned_weights.base_snapshot`: none for a LoRA, the to_q weights for "attention", the whole
        UNet for "full", to host memory) and leaving writes them back. `scale`: how much of the tuning's
        change the UNet carries (`tuned_weights.scaled_state`; 1 = all of it)."""
        if tuned is None:
            yield self.unet
            return
        snapshot = base_snapshot(self.unet, tuned.kind)
        try:
            state = scaled_state(tuned.kind, tuned.state, snapshot, scale)
            apply_state(self.unet, tuned.kind, state, tuned.lora_rank)
            yield self.unet
        finally:
            restore_base(self.unet, snapshot)

    @contextlib.contextmanager
    def tuning_unet(self, kind: str) -> Iterator[Any]:
        """``with components.tuning_unet(kind) as unet:`` the base UNet, to tune in place as `kind` within
        the block (which keeps copies of what it tuned, `tuned_weights.tuned_state`), and the base model
        again after it, however the block ends."""
        snapshot = base_snapshot(self.unet, kind)
        try:
            yield self.unet
        finally:
            restore_base(self.unet, snapshot)

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
