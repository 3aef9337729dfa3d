"""The Python API: `VidtunePipeline`, a diffusers-style pipeline over vidtune's four stages.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.api`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidtune import artifacts as A
from vidtune import config as C
from vidtune import distributed, pipeline, validate
from vidtune.config import RunConfig
from vidtune.device import DTYPE_NAMES
from vidtune.errors import VidtuneError
from vidtune.inputs import VideoInputs
from vidtune.model_choice import run_config
from vidtune.models import Components
from vidtune.results import CodenoiseResult, FusionResult, Result, SeparateResult, TuningResult
from vidtune.stages.common import StageCallback
from vidtune.stages.registry import STAGES

logger = logging.getLogger("vidtune")


@dataclass(frozen=True)
class VidtuneOutput:
    """What a pipeline call returns: the video and the typed result of every stage that ran (or was
    loaded from the run folder), their seconds, the config used and the run folder (None in memory)."""

    frames: np.ndarray
    stages: dict[int, Result]
    config: RunConfig
    run_dir: Path | None = None
    timings: dict[int, float] = field(default_factory=dict)
    summary: pipeline.RunSummary | None = None  # with a run folder: what ran, what was skipped, the outputs


class VidtunePipeline:
    """SD 1.x + T2I-Adapter (+ SAM) components and a base config; see the module docstring."""

    def __init__(self, components: Components | None, config: RunConfig | None = None) -> None:
        self._components = components
        self.config = config or RunConfig()
        self._session: pipeline.StageCache | None = None

    @property
    def components(self) -> Components:
        """The loaded models (loaded on first use by a pipeline made with `from_config`)."""
        if self._components is None:
            self._components = pipeline.load_components(self.config)
        return self._components

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig) -> VidtunePipeline:
        """A one-shot pipeline for `config`'s model (`vidtune run`): it loads the model only when a stage
        must run (a finished run folder loads nothing)."""
        return cls(None, config)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = "CompVis/stable-diffusion-v1-4",
        *,
        adapter: str | None = None,
        sam: str | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        allow_pickle: bool = False,
        config: RunConfig | str | Path | None = None,
        overrides: Sequence[str] = (),
    ) -> VidtunePipeline:
        """Load from a hub id, a local diffusers folder, the HF cache (`HF_HUB_OFFLINE=1` respected) or
        `"demo"` (the embedded demo model). `adapter` / `sam`: hub ids or folders (None: the config's;
        a model folder's own adapter/ or sam/ when it has one). `torch_dtype` / `device`: None = the
        config's `model.dtype` / `model.device` ("auto": fp16 on CUDA, fp32 on the CPU)."""
        base = config if isinstance(config, RunConfig) else None
        from_file = C.file_overrides(config) if config is not None and base is None else []
        named = [f"model.path={model}"] + ([f"model.adapter={adapter}"] if adapter is not None else [])
        cfg = run_config([from_file, list(overrides), named], base=base)
        m = cfg.model
        if sam is not None:
            m = replace(m, sam=str(sam))
        if torch_dtype is not None:
            m = replace(m, dtype=DTYPE_NAMES[torch_dtype])
        if device is not None:
            m = replace(m, device=str(device))
        cfg = replace(cfg, model=replace(m, allow_pickle=allow_pickle or m.allow_pickle))
        return cls(pipeline.load_components(cfg), cfg)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> VidtunePipeline:
        """Move the models to `device` (and the UNet, text encoder, adapter and SAM to `dtype`; the VAE
        stays fp32, as SD's overflows in fp16). Returns the pipeline, like diffusers' `.to`."""
        comps, device = self.components, torch.device(device)
        for m in (comps.unet, comps.text_encoder, comps.adapter, comps.sam_model):
            if m is not None:
                m.to(device=device, dtype=dtype) if dtype is not None else m.to(device)
        comps.vae.to(device)
        comps.device = device
        if dtype is not None:
            comps.dtype = dtype
        model = replace(self.config.model, device=device.type, dtype=DTYPE_NAMES.get(comps.dtype, "auto"))
        self.config = replace(self.config, model=model)
        self._session = None
        return self

    # --- the whole method ------------------------------------------------------------------
    def __call__(
        self,
        poses: str | Path | None = None,
        prompt: str | None = None,
        prompts: Mapping[int, str] | Sequence[str] | None = None,
        *,
        config: RunConfig | str | Path | None = None,
        overrides: Sequence[str] = (),
        run_dir: str | Path | None = None,
        callback: StageCallback | None = None,
        progress: bool = True,
        stages: Sequence[int] = tuple(STAGES),
        log: Callable[[str], None] | None = None,
    ) -> VidtuneOutput:
        """Generate the video of `poses` (OpenPose JSON folder, pose images, a pose video or footage of a
        person) for `prompt`, or a schedule `prompts` ({first_frame: prompt}, or one prompt per stage-4
        clip as a list). `callback(stage, step, timestep, latents)` runs after every denoising step of
        every stage and may return replacement latents (stage 3: every optimizer step, with the loss as a
        0-d tensor in place of the latents). `run_dir`: cache every stage there; a rerun resumes and
        loads the model only when a stage must run. `log`: where messages go (default: the "vidtune" logger)."""
        cfg = self._run_config(poses, prompt, prompts, config, overrides)
        log = distributed.main_only(log or logger.info)  # under torchrun: rank 0 speaks for the run
        if run_dir is not None:
            with distributed.main_first():  # rank 0 fills the pose-extraction cache, the others read it
                inputs = pipeline.build_inputs(cfg, Path(run_dir) / A.INPUTS / A.EXTRACTED)
            results: dict[int, Result] = {}
            summary = pipeline.run(
                cfg,
                run_dir,
                stages,
                progress=progress,
                components=self._run_components(cfg, log),
                log=log,
                callback=callback,
                inputs=inputs,
                results=results,
            )
            timings = {k: secs for k, (_, secs) in summary.stages.items()}
            return VidtuneOutput(
                frames=_video_of(results),
                stages=results,
                config=cfg,
                run_dir=Path(run_dir),
                timings=timings,
                summary=summary,
            )
        with tempfile.TemporaryDirectory(prefix="vidtune-") as tmp:  # footage's extracted poses
            inputs = pipeline.build_inputs(cfg, Path(tmp) / A.EXTRACTED)
        validate.check_frames(cfg, inputs.num_frames, stages)
        session = self._start(cfg, inputs)
        timings = {}
        for k in sorted(set(stages)):
            result = self._compute(k, session, callback, progress)
            timings[k] = result.seconds
        return VidtuneOutput(
            frames=_video_of(session.results), stages=dict(session.results), config=cfg, timings=timings
        )

    # --- stage by stage --------------------------------------------------------------------
    def prepare_inputs(
        self,
        poses: str | Path,
        prompt: str | None = None,
        prompts: Mapping[int, str] | Sequence[str] | None = None,
        *,
        config: RunConfig | str | Path | None = None,
        overrides: Sequence[str] = (),
    ) -> VideoInputs:
        """Load, clean, resample and render the poses and give every frame its prompt; later stage
        calls use this config (`config` / `overrides` on top of the pipeline's)."""
        cfg = self._run_config(poses, prompt, prompts, config, overrides)
        with tempfile.TemporaryDirectory(prefix="vidtune-") as tmp:
            inputs = pipeline.build_inputs(cfg, Path(tmp) / A.EXTRACTED)
        self._start(cfg, inputs)
        return inputs

    def separate(
        self, inputs: VideoInputs, callback: StageCallback | None = None, progress: bool = True
    ) -> SeparateResult:
        """Stage 1: every frame on its own, with its foreground mask."""
        session = self._session_for(inputs)
        return self._compute(1, session, callback, progress)

    def fuse(self, s1: SeparateResult, callback: StageCallback | None = None, progress: bool = True) -> FusionResult:
        """Stage 2: average fusion of the backgrounds of stage 1's frames."""
        session = self._require_session()
        session.results[1] = s1
        return self._compute(2, session, callback, progress)

    def tune(self, s2: FusionResult, callback: StageCallback | None = None, progress: bool = True) -> TuningResult:
        """Stage 3: fine-tune the UNet on the fused frames (afterwards the pipeline's UNet is the tuned one)."""
        session = self._require_session()
        session.results[2] = s2
        return self._compute(3, session, callback, progress)

    def codenoise(
        self,
        s2: FusionResult | None,
        tuned: TuningResult | None = None,
        callback: StageCallback | None = None,
        progress: bool = True,
    ) -> CodenoiseResult:
        """Stage 4: co-denoise the video as overlapping clips (with the tuned UNet when `tuned` is given)."""
        session = self._require_session()
        session.results.pop(2, None)
        session.results.pop(3, None)
        if s2 is not None:
            session.results[2] = s2
        if tuned is not None:
            session.results[3] = tuned
        return self._compute(4, session, callback, progress)

    # --- internals -------------------------------------------------------------------------
    def _run_config(
        self,
        poses: str | Path | None,
        prompt: str | None,
        prompts: Any,
        config: RunConfig | str | Path | None,
        overrides: Sequence[str],
    ) -> RunConfig:
        cfg = self.config if config is None else _as_config(config)
        cfg = replace(cfg, model=self.config.model)  # the loaded components decide the model section
        inputs = cfg.inputs
        if poses is not None:
            inputs = replace(inputs, poses=str(poses))
        if prompt is not None:
            inputs = replace(inputs, prompt=prompt, prompts={}, clip_prompts=[])
        if prompts is not None:
            if isinstance(prompts, Mapping):
                inputs = replace(inputs, prompts={str(int(k)): str(v) for k, v in prompts.items()}, clip_prompts=[])
            else:
                inputs = replace(inputs, clip_prompts=[str(p) for p in prompts], prompts={})
        cfg = C.apply_overrides(replace(cfg, inputs=inputs), list(overrides))
        validate.check_config(cfg)
        return cfg

    def _run_components(self, cfg: RunConfig, log: Callable[[str], None]) -> Components | Callable[[], Components]:
        """The components for a run folder: those loaded, or a loader the run calls only when a stage runs."""
        if self._components is not None:
            return self._components

        def load() -> Components:
            self._components = pipeline.load_components(cfg)
            log(f"vidtune: loaded {cfg.model.path} on {self._components.device} ({self._components.dtype})")
            return self._components

        return load

    def _start(self, cfg: RunConfig, inputs: VideoInputs) -> pipeline.StageCache:
        self._session = pipeline.StageCache(None, cfg, self.components, inputs)
        return self._session

    def _session_for(self, inputs: VideoInputs) -> pipeline.StageCache:
        if self._session is None or self._session.inputs is not inputs:
            return self._start(self.config if self._session is None else self._session.cfg, inputs)
        return self._session

    def _require_session(self) -> pipeline.StageCache:
        if self._session is None:
            raise VidtuneError(
                "no inputs yet: call pipe.prepare_inputs(poses, prompt=...) and pipe.separate(inputs) first"
            )
        return self._session

    def _compute(self, k: int, session: pipeline.StageCache, callback: StageCallback | None, progress: bool) -> Any:
        result = session.recompute(k, progress, callback, logger.info)
        logger.info(f"vidtune: stage {k} ({STAGES[k].title}) done in {result.seconds:.1f}s")
        return result


def _as_config(config: RunConfig | str | Path) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    from vidtune.model_choice import resolve_model_path

    cfg = C.load(config)  # a run folder's config names the demo model "demo" (`config.portable`)
    return replace(cfg, model=replace(cfg.model, path=resolve_model_path(cfg.model.path)))


def _video_of(results: Mapping[int, Result]) -> np.ndarray:
    """The frames of the latest stage that has any (stage 3 has none: stage 2's then)."""
    for k in sorted(results, reverse=True):
        r = results[k]
        if r is not None and getattr(r, "frames", None) is not None and len(r.frames):
            return r.frames
    return np.zeros((0, 0, 0, 3), np.uint8)
