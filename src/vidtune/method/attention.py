"""Cross-frame self-attention for stage 4 (temporal co-denoising), as diffusers attention processors.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method.attention`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidtune.errors import VidtuneError

__all__ = [
    "ATTENTION_MODES",
    "AttentionMode",
    "CrossFrameAttention",
    "CrossFrameAttnProcessor",
    "cross_frame_attention",
    "GroupLayout",
    "group_layout",
]

SELF_ATTENTION_SUFFIX = "attn1.processor"


# --------------------------------------------------------------------------- layouts (pure)


@dataclass(frozen=True)
class GroupLayout:
    """Where each frame of a batch sits: ``group``, ``start``, ``size`` are ``(frames,)`` long tensors
    (the frame's group index, its group's first frame in the batch, its group's size)."""

    group: torch.Tensor
    start: torch.Tensor
    size: torch.Tensor

    @property
    def frame(self) -> torch.Tensor:
        """``(frames,)`` batch index of every frame."""
        return torch.arange(self.group.numel())


def group_layout(sizes: list[int]) -> GroupLayout:
    """The per-frame layout of a batch made of consecutive groups of ``sizes`` frames."""
    sizes_t = torch.tensor(sizes, dtype=torch.long)
    starts_t = torch.cumsum(sizes_t, 0) - sizes_t
    group = torch.repeat_interleave(torch.arange(len(sizes)), sizes_t)
    return GroupLayout(group=group, start=starts_t[group], size=sizes_t[group])


def _own_frame(layout: GroupLayout) -> torch.Tensor:
    return layout.frame[:, None]


def _first_frame(layout: GroupLayout) -> torch.Tensor:
    return layout.start[:, None]


def _middle_frame(layout: GroupLayout) -> torch.Tensor:
    return (layout.start + layout.size // 2)[:, None]


def _first_and_previous_frame(layout: GroupLayout) -> torch.Tensor:
    previous = torch.maximum(layout.frame - 1, layout.start)
    return torch.stack([layout.start, previous], dim=1)


def _no_frame(layout: GroupLayout) -> torch.Tensor:
    return layout.frame.new_empty((layout.frame.numel(), 0))


@dataclass(frozen=True)
class AttentionMode:
    """One cross-frame attention mode.

    ``sources(layout)`` returns a ``(frames, n)`` long tensor: the batch indices of the frames whose
    keys/values frame f attends to, concatenated along the token axis in this order.
    ``uses_anchor``: keys/values come (also) from the anchor recorded by ``record_anchor``.
    """

    name: str
    sources: Callable[[GroupLayout], torch.Tensor]
    uses_anchor: bool
    reference: str


ATTENTION_MODES: dict[str, AttentionMode] = {
    "none": AttentionMode("none", _own_frame, False, "plain self-attention"),
    "first": AttentionMode("first", _first_frame, False, "Text2Video-Zero: the group's first frame"),
    "sparse-causal": AttentionMode(
        "sparse-causal", _first_and_previous_frame, False, "Tune-A-Video: [first, previous]"
    ),
    "middle": AttentionMode("middle", _middle_frame, False, "Gen-L-Video: the group's middle frame"),
    "global": AttentionMode("global", _no_frame, True, "one recorded anchor for the whole video"),
}


@dataclass(frozen=True)
class _Plan:
    """The key/value gather for one layout, on one device.

    ``sources``: ``(S,)`` batch rows whose keys/values are projected (each once);
    ``table``: ``(frames, n)`` rows of the projected sources each frame attends to;
    ``anchor``: ``(frames,)`` row of the recorded anchor batch each frame attends to, or None.
    """

    frames: int
    sources: torch.Tensor
    table: torch.Tensor
    anchor: torch.Tensor | None

    def to(self, device: torch.device) -> _Plan:
        anchor = None if self.anchor is None else self.anchor.to(device)
        return _Plan(self.frames, self.sources.to(device), self.table.to(device), anchor)


def _build_plan(mode: AttentionMode, sizes: list[int], anchor_index: list[int] | None, include_self: bool) -> _Plan:
    layout = group_layout(sizes)
    columns = mode.sources(layout)
    if include_self and mode.name != "none":
        columns = torch.cat([columns, _own_frame(layout)], dim=1)
    sources, table = torch.unique(columns, return_inverse=True)
    anchor = None
    if mode.uses_anchor and anchor_index is not None:
        anchor = torch.tensor(anchor_index, dtype=torch.long)[layout.group]
    table = table.reshape(columns.shape)
    return _Plan(frames=layout.group.numel(), sources=sources, table=table, anchor=anchor)


# --------------------------------------------------------------------------- the processor


class CrossFrameAttnProcessor:
    """The attention processor of one self-attention layer; its state lives in ``controller``.

    Follows diffusers' ``AttnProcessor2_0`` step for step (spatial norm, 4-d inputs, group norm,
    ``norm_cross``, q/k norms, residual connection, ``rescale_output_factor``); only the rows the
    keys and values come from differ. Attention masks are not supported (Stable Diffusion has none).
    """

    def __init__(self, controller: CrossFrameAttention, name: str):
        self.controller = controller
        self.name = name

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError(
                f"cross-frame attention ({self.name}) does not support attention masks; "
                "call the UNet without `attention_mask`"
            )
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size = hidden_states.shape[0]

        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None:  # a cross-attention attn1 (only_cross_attention)
            if attn.norm_cross:
                encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
            key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        else:
            key, value = self._keys_values(attn, hidden_states)

        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # (frames, heads, tokens, head_dim); keys/values may hold several frames' tokens
        hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)

        hidden_states = attn.to_out[0](hidden_states)  # linear projection
        hidden_states = attn.to_out[1](hidden_states)  # dropout
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _keys_values(self, attn: torch.nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(frames, n * tokens, inner)`` from the normed layer inputs
        ``(frames, tokens, channels)``."""
        controller = self.controller
        if controller.recording:  # the anchor's keys/values, projected once per step for every clip
            key, value = attn.to_k(hidden_states), attn.to_v(hidden_states)
            controller._store_anchor(self.name, key, value)
            return key, value
        if controller.mode.name == "none":
            return attn.to_k(hidden_states), attn.to_v(hidden_states)

        plan = controller._plan_for(hidden_states.shape[0], hidden_states.device)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        if plan.anchor is not None:
            anchor_key, anchor_value = controller._anchor_for(self.name)
            keys.append(anchor_key.to(hidden_states).index_select(0, plan.anchor))
            values.append(anchor_value.to(hidden_states).index_select(0, plan.anchor))
        if plan.table.shape[1] > 0:
            frames, n = plan.table.shape
            source = hidden_states.index_select(0, plan.sources)  # each source frame projected once
            rows = plan.table.flatten()  # (frames * n,), frame-major
            k, v = attn.to_k(source).index_select(0, rows), attn.to_v(source).index_select(0, rows)
            keys.append(k.reshape(frames, n * k.shape[1], k.shape[2]))
            values.append(v.reshape(frames, n * v.shape[1], v.shape[2]))
        if len(keys) == 1:
            return keys[0], values[0]
        return torch.cat(keys, dim=1), torch.cat(values, dim=1)


# --------------------------------------------------------------------------- the controller


class CrossFrameAttention:
    """Installs cross-frame self-attention into a UNet and holds its state (layout, anchor).

    State is explicit and resettable: the group layout (:meth:`set_groups`) and, in ``global``
    mode, the recorded anchor inputs of every self-attention layer (:meth:`record_anchor`,
    :meth:`clear_anchor`). One controller drives one UNet at a time.
    """

    def __init__(self, mode: str, *, include_self: bool = False):
        """``mode``: a key of :data:`ATTENTION_MODES` (the ``codenoise.attention`` setting).
        ``include_self``: also attend to the frame's own tokens ([sources, self]); no effect for
        ``none``. Default False, as Text2Video-Zero and Tune-A-Video (see the module docstring)."""
        if mode not in ATTENTION_MODES:
            raise VidtuneError(
                f"codenoise.attention = {mode!r} is not a cross-frame attention mode; "
                f"use one of {', '.join(repr(m) for m in ATTENTION_MODES)}"
            )
        self.mode = ATTENTION_MODES[mode]
        self.include_self = include_self
        self.recording = False
        self._unet: torch.nn.Module | None = None
        self._originals: dict[str, object] | None = None
        self._sizes: list[int] | None = None
        self._anchor_index: list[int] | None = None
        self._plans: dict[torch.device, _Plan] = {}
        self._anchors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> the anchors' (keys, values)

    # ---- installation

    @property
    def installed(self) -> bool:
        return self._unet is not None

    @property
    def uses_anchor(self) -> bool:
        """True when the mode needs :meth:`record_anchor` before every denoising step."""
        return self.mode.uses_anchor

    def install(self, unet: torch.nn.Module) -> None:
        """Replace every ``attn1`` processor of ``unet``; the originals are kept for :meth:`remove`."""
        if self._unet is not None:
            raise RuntimeError("cross-frame attention is already installed; call remove() first")
        originals = dict(unet.attn_processors)
        names = [name for name in originals if name.endswith(SELF_ATTENTION_SUFFIX)]
        if not names:
            raise ValueError(f"{type(unet).__name__} has no self-attention layers (*.{SELF_ATTENTION_SUFFIX})")
        processors = dict(originals)
        for name in names:
            processors[name] = CrossFrameAttnProcessor(self, name)
        unet.set_attn_processor(processors)  # pops from the dict it is given: pass a copy
        self._unet, self._originals = unet, originals

    def remove(self) -> None:
        """Put back the exact original processor objects; a no-op when not installed."""
        if self._unet is None:
            return
        self._unet.set_attn_processor(dict(self._originals))
        self._unet, self._originals = None, None
        self.clear_anchor()

    # ---- layout

    def set_groups(self, sizes: list[int], anchor_index: list[int] | None = None) -> None:
        """The next forwards' batch is consecutive groups of ``sizes`` frames (CFG: uncond groups,
        then cond groups). ``anchor_index[g]``: the row of the recorded anchor batch that group g
        attends to in ``global`` mode; it may be left out when a single anchor is recorded."""
        sizes = [int(s) for s in sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"set_groups: group sizes must be positive integers, got {sizes}")
        if anchor_index is not None:
            anchor_index = [int(a) for a in anchor_index]
            if len(anchor_index) != len(sizes):
                raise ValueError(
                    f"set_groups: anchor_index has {len(anchor_index)} entries for {len(sizes)} groups; "
                    "give one recorded-anchor row per group"
                )
            if min(anchor_index) < 0:
                raise ValueError(f"set_groups: anchor_index must be >= 0, got {anchor_index}")
        self._sizes, self._anchor_index = sizes, anchor_index
        self._plans = {}

    def _plan_for(self, frames: int, device: torch.device) -> _Plan:
        if self._sizes is None:
            raise RuntimeError(
                f"cross-frame attention {self.mode.name!r}: call set_groups(sizes) before the UNet forward"
            )
        if sum(self._sizes) != frames:
            raise ValueError(
                f"set_groups sizes {self._sizes} sum to {sum(self._sizes)} frames, but the UNet was called "
                f"with a batch of {frames}; the sizes must cover the batch exactly (CFG doubles the groups)"
            )
        if device not in self._plans:
            anchor_index = self._anchor_index
            if self.mode.uses_anchor and anchor_index is None:
                anchor_index = [0] * len(self._sizes)  # validated against the anchor count in _anchor_for
            plan = _build_plan(self.mode, self._sizes, anchor_index, self.include_self)
            self._plans[device] = plan.to(device)
        return self._plans[device]

    # ---- global anchor

    @contextmanager
    def record_anchor(self) -> Iterator[CrossFrameAttention]:
        """UNet forwards inside this block record the self-attention keys and values ``(anchors, tokens,
        inner)`` of every layer (projected once per recording, reused by every later forward); their batch is the anchor frames (e.g. ``[uncond, cond]``). The
        recording replaces the previous one. Anchor frames compute plain self-attention."""
        if not self.mode.uses_anchor:
            raise RuntimeError(f"record_anchor is only used by the 'global' mode, not {self.mode.name!r}")
        if self._unet is None:
            raise RuntimeError("record_anchor: install the cross-frame attention into a UNet first")
        self.clear_anchor()
        self.recording = True
        try:
            yield self
        finally:
            self.recording = False

    def clear_anchor(self) -> None:
        """Forget the recorded anchor (frees its memory)."""
        self._anchors = {}

    def _store_anchor(self, name: str, key: torch.Tensor, value: torch.Tensor) -> None:
        if name in self._anchors:
            raise RuntimeError(
                "record_anchor: more than one UNet forward inside one record block; record all anchors "
                "(e.g. [uncond, cond]) in a single batch"
            )
        self._anchors[name] = (key, value)

    def _anchor_for(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        anchor = self._anchors.get(name)
        if anchor is None:
            raise RuntimeError(
                f"cross-frame attention 'global': no anchor recorded for {name}; run the anchor frames "
                "through the UNet inside `with controller.record_anchor():` at every denoising step"
            )
        count = anchor[0].shape[0]
        if self._anchor_index is None and count != 1:
            raise ValueError(
                f"{count} anchors are recorded; set_groups(sizes, anchor_index=[...]) must say which one "
                "each group uses"
            )
        top = max(self._anchor_index or [0])  # host-side check: no device sync per layer
        if top >= count:
            raise ValueError(
                f"set_groups anchor_index {self._anchor_index} refers to anchor {top}, "
                f"but only {count} anchors are recorded"
            )
        return anchor


@contextmanager
def cross_frame_attention(
    unet: torch.nn.Module, mode: str, *, include_self: bool = False
) -> Iterator[CrossFrameAttention]:
    """Install cross-frame attention of ``mode`` into ``unet`` for the block; restored on exit."""
    controller = CrossFrameAttention(mode, include_self=include_self)
    controller.install(unet)
    try:
        yield controller
    finally:
        controller.remove()
