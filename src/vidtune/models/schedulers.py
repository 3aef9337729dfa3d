"""The diffusers schedulers vidtune samples with, by name, on SD's scaled-linear schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vidtune.errors import VidtuneError

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
