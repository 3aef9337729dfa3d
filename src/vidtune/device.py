"""The device and dtype rule: one place decides where a run computes and in which precision.

`model.device = "auto"` is CUDA when one is visible, else the CPU; `model.dtype = "auto"` is fp16 on
CUDA and fp32 elsewhere (the CPU runs fp32). `pipeline`, the API and `vidtune plan` all use it.
"""

from __future__ import annotations

import torch

from vidtune.errors import VidtuneError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def resolve_device(name: str, strict: bool = True) -> torch.device:
    """`auto` = CUDA when available, else CPU. `strict`: asking for CUDA where none is visible is an error
    (False: keep the name, for a plan made on another machine than the run)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if strict and name.startswith("cuda") and not torch.cuda.is_available():
        raise VidtuneError(f"model.device = {name!r} but no CUDA device is visible; use model.device = 'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` = fp16 on CUDA, fp32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[name]
