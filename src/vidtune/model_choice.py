"""What a model string means: one meaning in the CLI, the Python API, the app and the benchmark.

- ``"demo"``: the embedded demo model's folder (``vidtune/demo/model``);
- a local folder: that folder. Its ``vidtune.toml`` presets (a small model's frame size, steps and
  tuning) apply over vidtune's defaults and under everything the user gives, and its own
  ``adapter/`` is used unless the user names an adapter;
- anything else: a hub id, loaded from the HF cache or the hub by `vidtune.models.load_components`.

`run_config` builds a run's config from these rules and the user's override layers (a config
file, flags, ``--set``), in that order. Torch-free: the CLI checks a config before any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vidtune.config import DEMO_ALIAS, DEMO_MODEL

if TYPE_CHECKING:
    from vidtune.config import RunConfig

PRESETS_FILE = "vidtune.toml"


def resolve_model_path(model: str | os.PathLike[str]) -> str:
    """``"demo"`` is the embedded demo model's folder; anything else is returned as given."""
    return str(DEMO_MODEL) if str(model) == DEMO_ALIAS else str(model)


def model_presets(model: str | os.PathLike[str]) -> list[str]:
    """The config overrides a local model folder recommends in its `vidtune.toml` ([] for none, or a
    hub id). Applied before the user's config and overrides."""
    from vidtune.config import as_overrides, read_toml

    path = Path(resolve_model_path(model)) / PRESETS_FILE
    if not path.is_file():
        return []
    return as_overrides(read_toml(path, what="model presets", fix="fix or remove it"))


def has_own_adapter(model: str | os.PathLike[str]) -> bool:
    """Whether a local model folder ships its own T2I-Adapter (``adapter/``)."""
    return Path(resolve_model_path(model), "adapter").is_dir()


def names_key(layers: Sequence[Sequence[str]], key: str) -> bool:
    """Whether any ``section.key=value`` override in ``layers`` sets ``key``."""
    return any(o.split("=", 1)[0].strip() == key for layer in layers for o in layer)


def run_config(layers: Sequence[Sequence[str]] = (), base: RunConfig | None = None) -> RunConfig:
    """The config of a run: vidtune's defaults, the model folder's presets, then each layer of
    ``section.key=value`` overrides in order (a config file's, flags', ``--set``'s). The model is the
    last ``model.path`` the layers name (else the default), with ``"demo"`` resolved; its own
    adapter/ is used unless a layer names ``model.adapter``.

    A complete ``base`` config (the API's ``config=RunConfig(...)``) replaces the defaults and the
    presets: the caller has decided everything, the layers still apply over it."""
    from vidtune import config as C

    flat = [o for layer in layers for o in layer]
    probe = C.apply_overrides(base or C.RunConfig(), flat)  # checks every override; says which model
    path = resolve_model_path(probe.model.path)
    if base is not None:
        return replace(probe, model=replace(probe.model, path=path))
    cfg = C.apply_overrides(C.RunConfig(), model_presets(path) + flat)
    model = replace(cfg.model, path=path)
    if not names_key(layers, "model.adapter") and has_own_adapter(path):
        model = replace(model, adapter="")  # "" = the model folder's own adapter/
    return replace(cfg, model=model)
