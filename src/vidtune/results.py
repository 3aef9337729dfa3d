"""The typed results of the four stages: what each stage returns and the next one receives.

Every result is frozen and has one interface (`Result`): `info` (what its done.json records),
`seconds`, `save(folder, to)` into its stage folder and `load(folder)` back, with the file names of
`vidtune.artifacts`. The run folder (`vidtune.rundir`, `vidtune.pipeline`) is a cache on top of them:
a finished stage is loaded instead of recomputed. Decoded frames are uint8 (N, H, W, 3) RGB; latents
are on the device they were computed on until saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import DEFAULT_OUTPUT, OutputConfig
from vidtune.errors import VidtuneError
from vidtune.loss_plot import write_loss_plot
from vidtune.tuned_weights import apply_state, load_state, save_state


@dataclass(frozen=True)
class SaveTo:
    """Where a result's extras go when it is saved: its video (None: no video) at `fps`, encoded as
    `output` says, and the tuned UNet a full tuning is saved from (its config goes with the weights)."""

    video: Path | None = None
    fps: float = 8.0
    output: OutputConfig = DEFAULT_OUTPUT
    unet: Any = None


class Result(Protocol):
    """What every stage returns (`SeparateResult` ... `CodenoiseResult`)."""

    seconds: float

    @property
    def info(self) -> dict[str, Any]:
        """What the stage's done.json records."""
        ...

    def save(self, folder: str | Path, to: SaveTo = ...) -> None: ...

    @classmethod
    def load(cls, folder: str | Path, frames: bool = True) -> Result: ...


def _load_tensors(path: Path, stages: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise VidtuneError(f"{path} is missing: that stage has not run in this folder; run with --stages {stages}")
    return load_file(str(path))


def _require(tensors: dict[str, torch.Tensor], keys: tuple[str, ...], path: Path, stages: str) -> None:
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise VidtuneError(f"{path}: has no {missing[0]!r} tensor; rerun with --stages {stages}")


def _read_frames(folder: Path) -> np.ndarray:
    from vidtune.video import read_frames

    return np.stack(list(read_frames(folder)))


def write_frames(
    frames: np.ndarray, folder: Path, video: Path | None, fps: float, output: OutputConfig = DEFAULT_OUTPUT
) -> None:
    """PNG frames (atomically, as one folder) and, when `video` is given, the videos of them as
    `output` says (`vidtune.encoding`)."""
    from vidtune.encoding import write_videos
    from vidtune.video import write_frames_png

    with atomic.atomic_dir(folder) as tmp:
        write_frames_png(frames, tmp)
    if video is not None:
        write_videos(frames, video, output, fps)


@dataclass(frozen=True)
class SeparateResult:
    """Stage 1: every frame generated on its own.

    z_t (N, C, h, w): the latents at the fusion step (what stage 2 fuses); timestep / t_index: that
    step; x0: the final latents; fg (N, 1, h, w) and fg_pixel (N, H, W): the foreground masks in [0, 1]
    at latent and pixel resolution; frames: the decoded frames; segmenter: which segmenter made the masks.
    """

    z_t: torch.Tensor
    timestep: int
    t_index: int
    x0: torch.Tensor
    fg: torch.Tensor
    fg_pixel: torch.Tensor
    frames: np.ndarray
    segmenter: str = ""
    seconds: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.x0.shape[0])

    @property
    def info(self) -> dict[str, Any]:
        return {
            "frames": self.num_frames,
            "segmenter": self.segmenter,
            "fusion_step_index": self.t_index,
            "fusion_timestep": self.timestep,
        }

    def save(self, folder: str | Path, to: SaveTo = SaveTo()) -> None:
        folder = Path(folder)
        write_frames(self.frames, folder / A.FRAMES, to.video, to.fps, to.output)
        masks = (self.fg_pixel.cpu().numpy()[..., None] * 255).round().astype(np.uint8)
        write_frames(np.repeat(masks, 3, axis=-1), folder / A.MASKS, None, to.fps)
        atomic.write_safetensors(
            folder / A.LATENTS,
            {
                "z_t": self.z_t,
                "timestep": torch.tensor([self.timestep]),
                "t_index": torch.tensor([self.t_index]),
                "x0": self.x0,
                "fg": self.fg,
                "fg_pixel": self.fg_pixel,
            },
        )

    @classmethod
    def load(cls, folder: str | Path, frames: bool = True) -> SeparateResult:
        """Stage 1's result from its folder (`frames=False` skips reading the PNG frames)."""
        folder = Path(folder)
        t = _load_tensors(folder / A.LATENTS, "1")
        _require(t, ("z_t", "timestep", "t_index", "x0", "fg", "fg_pixel"), folder / A.LATENTS, "1")
        done = _done_info(folder)
        return cls(
            z_t=t["z_t"],
            timestep=int(t["timestep"]),
            t_index=int(t["t_index"]),
            x0=t["x0"],
            fg=t["fg"],
            fg_pixel=t["fg_pixel"],
            frames=_read_frames(folder / A.FRAMES) if frames else np.zeros((0,)),
            segmenter=str(done.get("segmenter", "")),
            seconds=float(done.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class FusionResult:
    """Stage 2: the fused video. x0: its final latents; z_fused: the latents right after the fusion at
    step t; fg: the foreground masks it fused with (stage 1's); weights: the fusion weights used
    (w_f, w_b, space, segments, ...); frames: the decoded frames; fg_pixel (N, H, W): stage 1's masks
    at pixel resolution (the background plate's; None for a result built without them); trajectory
    (S, N, C, h, w): the latents entering each of its S last sampling steps (step index ``steps - S + k``),
    what stage 4's ``codenoise.init = "trajectory"`` starts from (None for a result made without it)."""

    x0: torch.Tensor
    z_fused: torch.Tensor
    fg: torch.Tensor
    weights: dict[str, Any]
    frames: np.ndarray
    seconds: float = 0.0
    fg_pixel: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.x0.shape[0])

    @property
    def info(self) -> dict[str, Any]:
        w = self.weights
        return {"frames": self.num_frames, "w_f": w["w_f"], "w_b": w["w_b"], "space": w["space"]}

    def save(self, folder: str | Path, to: SaveTo = SaveTo()) -> None:
        folder = Path(folder)
        write_frames(self.frames, folder / A.FRAMES, to.video, to.fps, to.output)
        latents = {"x0": self.x0, "z_fused": self.z_fused}
        if self.trajectory is not None:
            latents["trajectory"] = self.trajectory
        atomic.write_safetensors(folder / A.LATENTS, latents)
        masks = {"fg": self.fg} if self.fg_pixel is None else {"fg": self.fg, "fg_pixel": self.fg_pixel}
        atomic.write_safetensors(folder / A.STAGE_MASKS, masks)
        atomic.write_json(folder / A.FUSION_WEIGHTS, self.weights)

    @classmethod
    def load(cls, folder: str | Path, frames: bool = True) -> FusionResult:
        folder = Path(folder)
        t = _load_tensors(folder / A.LATENTS, "1,2")
        _require(t, ("x0", "z_fused"), folder / A.LATENTS, "1,2")
        masks = folder / A.STAGE_MASKS
        fg = _load_tensors(masks, "1,2")
        _require(fg, ("fg",), masks, "1,2")
        weights = json.loads((folder / A.FUSION_WEIGHTS).read_text())
        return cls(
            x0=t["x0"],
            z_fused=t["z_fused"],
            fg=fg["fg"],
            fg_pixel=fg.get("fg_pixel"),
            trajectory=t.get("trajectory"),
            weights=weights,
            frames=_read_frames(folder / A.FRAMES) if frames else np.zeros((0,)),
            seconds=float(_done_info(folder).get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class TuningResult:
    """Stage 3: what was tuned (`tuned_weights.TunedWeights`). kind: "full" | "lora" | "attention";
    state: the tuned tensors by parameter name (for "full" the whole UNet's); lora_rank; losses: the
    loss per optimizer step; record: what tuning.json records (steps, final loss, seconds per step,
    config...); source: the stage3/ folder the weights are saved in ("" for a result only in memory)."""

    kind: str
    state: dict[str, torch.Tensor] = field(repr=False)
    losses: list[float]
    record: dict[str, Any]
    lora_rank: int = 0
    seconds: float = 0.0
    source: str = ""

    @property
    def info(self) -> dict[str, Any]:
        return {k: self.record[k] for k in ("trainable", "steps", "final_loss", "seconds_per_step", "resumed_from")}

    def apply(self, unet: Any) -> None:
        """Load these tuned weights into `unet` in place (idempotent; see `tuned_weights.apply_state`)."""
        apply_state(unet, self.kind, self.state, self.lora_rank)

    def save(self, folder: str | Path, to: SaveTo = SaveTo()) -> None:
        """The tuned weights (safetensors; a LoRA also as diffusers' LoRA file; "full" needs `to.unet`),
        the loss plot, tuning.json."""
        folder = Path(folder)
        save_state(self.kind, self.state, self.lora_rank, folder, unet=to.unet)
        write_loss_plot(self.losses, folder / A.LOSS_PLOT)
        atomic.write_json(folder / A.TUNING_INFO, self.record)

    @classmethod
    def load(cls, folder: str | Path, frames: bool = True) -> TuningResult:
        """Stage 3's result from its folder (`frames` is there for the shared signature: it has none)."""
        folder = Path(folder)
        path = folder / A.TUNING_INFO
        if not path.is_file():
            raise VidtuneError(f"{path}: missing, so stage 3 has not finished; run with --stages 3 (or --stages 2,3)")
        record = json.loads(path.read_text())
        kind, state, rank = load_state(folder, record)
        losses = []
        if (folder / A.LOSS_CSV).is_file():
            rows = (folder / A.LOSS_CSV).read_text().splitlines()[1:]
            losses = [float(r.split(",")[1]) for r in rows if r]
        return cls(
            kind=kind,
            state=state,
            losses=losses,
            record=record,
            lora_rank=rank,
            seconds=float(_done_info(folder).get("seconds", 0.0)),
            source=str(folder.resolve()),
        )


@dataclass(frozen=True)
class CodenoiseResult:
    """Stage 4: the final video. x0: its latents; frames: the decoded frames; info: clips, which UNet
    ("base" / "tuned"), the attention, UNet frame-evaluations per step."""

    x0: torch.Tensor
    frames: np.ndarray
    info: dict[str, Any]
    seconds: float = 0.0

    def save(self, folder: str | Path, to: SaveTo = SaveTo()) -> None:
        folder = Path(folder)
        write_frames(self.frames, folder / A.FRAMES, to.video, to.fps, to.output)
        atomic.write_safetensors(folder / A.LATENTS, {"x0": self.x0})

    @classmethod
    def load(cls, folder: str | Path, frames: bool = True) -> CodenoiseResult:
        folder = Path(folder)
        t = _load_tensors(folder / A.LATENTS, "4")
        _require(t, ("x0",), folder / A.LATENTS, "4")
        done = _done_info(folder)
        return cls(
            x0=t["x0"],
            frames=_read_frames(folder / A.FRAMES) if frames else np.zeros((0,)),
            info={
                k: v
                for k, v in done.items()
                if k in ("frames", "clips", "unet", "attention", "unet_frame_evals_per_step")
            },
            seconds=float(done.get("seconds", 0.0)),
        )


StageResult = SeparateResult | FusionResult | TuningResult | CodenoiseResult


def _done_info(folder: Path) -> dict[str, Any]:
    path = folder / A.DONE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
