"""`vidtune plan CONFIG.toml`: what each stage will do and cost, before any model is loaded.

`sizes` counts parameters from config files, `memory` estimates each stage's peak, `cost` counts UNet
evaluations (and times one with `--measure`), `render` writes the report. Design notes (the memory
model and its calibration): docs/internals.md, section `vidtune.plan`.
"""

from vidtune.plan.cost import TRAIN_STEP_EVALS, evaluations_text, measure_unet_seconds, time_lines, unet_evaluations
from vidtune.plan.memory import (
    BACKWARD_ACTIVATIONS,
    LATENT_COPIES,
    OPTIMIZER_BYTES,
    MemoryEstimate,
    memory_estimate,
    stage_peaks,
)
from vidtune.plan.render import plan_report, plan_text, plural, schedule_lines
from vidtune.plan.sizes import (
    _COUNTERS,
    SD14_CONFIGS,
    ModelSizes,
    model_sizes,
    trainable_parameters,
    unet_attention_widths,
    unet_parameters,
)

__all__ = [
    "BACKWARD_ACTIVATIONS",
    "LATENT_COPIES",
    "OPTIMIZER_BYTES",
    "SD14_CONFIGS",
    "TRAIN_STEP_EVALS",
    "_COUNTERS",
    "MemoryEstimate",
    "ModelSizes",
    "evaluations_text",
    "measure_unet_seconds",
    "memory_estimate",
    "model_sizes",
    "plan_report",
    "plan_text",
    "plural",
    "schedule_lines",
    "stage_peaks",
    "time_lines",
    "trainable_parameters",
    "unet_attention_widths",
    "unet_evaluations",
    "unet_parameters",
]
