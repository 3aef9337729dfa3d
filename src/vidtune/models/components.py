"""`Components`: the loaded models of one run, and which tuned weights its UNet carries."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from vidtune.tuned_weights import TunedWeights, UnetWeights, begin_tuning, switch_unet

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
