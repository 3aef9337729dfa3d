"""Stage 4's speed against Gen-L-Video's loop, at the same quality. Run by hand, under cpulock:

    python bench/codenoise_speed.py --quick                      # 3 sequences x 64 frames, demo presets
    python bench/codenoise_speed.py --quick --clip-length 16 --stride 8
    python bench/codenoise_speed.py --sequences 6 --frames 96 --overlap --out bench/results/codenoise_speed.md

One process, the embedded demo model, unseen synthetic sequences (seeds 301-306: neither the demo's
training range nor the committed benchmarks' 11-13 / 101-112). For each sequence stages 1-3 run once
with the demo presets (the tuned UNet, stage 2's frames and masks are the common input), then stage 4
runs in each form on the same model, inputs and seeds, its wall time measured around the whole stage
(plan, initial latents, the loop, decoding) and its UNet frame evaluations counted at the UNet's
forward (every batch row: classifier-free guidance counts twice):

- ``gen_l_video``: Gen-L-Video's own loop form, written out here: per clip one UNet call, one scheduler
  step on the clip with the clip's own copy of the scheduler (Gen-L-Video steps one shared scheduler per
  clip, which breaks stateful samplers; copies are its intent and equal it for DDIM), then z_{t-1} of
  every frame is the flat average over the clips that hold it; the overlapping clips [kS, kS + M) with a
  tail clip added so that every frame is denoised (Gen-L-Video leaves the tail out). Everything else is
  stage 4's: the same cross-frame attention, adapter features computed once, the stage-2 background
  pulled per clip (`keep_background_guide` on the clip's slice), the SDEdit start.
- ``vidtune``: `vidtune.stages.codenoise.run` with the config's `codenoise.mode` (default: shifted) and its
  other defaults (guidance only at t >= 200: `codenoise.unguided_below`).
- ``overlap`` (with --overlap): the same with `codenoise.mode = "overlap"` (eps merged, one step).

Quality on the synthetic world's ground truth: background flicker (mean |dI| of consecutive frames on
pixels that are background in both, 0-255; `metrics.Flicker`), warping error (`metrics.WarpErrorDIS`,
all pixels), the seam ratio (`metrics.SeamRatio`: |dI| of pairs straddling a clip boundary over the
others; Gen-L-Video's at its clip boundaries; the shifted mode's at the boundaries of its last step
and at the overlapping clips' boundaries, the larger of the two reported) divided by the ground truth's
at the same pairs (with 8 boundary pairs of 63 the raw ratio mostly measures how fast the content itself
moves at those pairs: a dance's |dI| varies by tens of percent from pair to pair; the raw ratio is
reported too, as `seam_raw`), pose IoU
(`adherence.video_adherence`). Means over the sequences; the speed-up is the sum of Gen-L-Video's
stage-4 seconds over the sum of vidtune's. The last line is

    speedup=X.XX bg_flicker=A/B warp=C/D seam=E pose_iou=F/G        (vidtune / Gen-L-Video)

with warp in units of 1e-3.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# (motion, prompt, seed): unseen by the demo model's training and by the committed benchmarks
SEQUENCES: tuple[tuple[str, str, int], ...] = (
    ("walk", "a blue figure walking in a desert at sunset", 301),
    ("dance", "a pink figure dancing on a beach during the day", 302),
    ("run", "a yellow figure running on a snowy field at night", 303),
    ("wave", "a green figure waving in a city street during the day", 304),
    ("jump", "a purple figure jumping on a grassy meadow at sunset", 305),
    ("squat", "a red figure squatting in a desert during the day", 306),
)
FORMS = ("vidtune", "overlap", "gen_l_video")


@dataclass
class Measure:
    """One stage-4 form on one sequence."""

    seconds: float
    evals: int
    frames: np.ndarray = field(repr=False)
    seams: list[list[tuple[int, int]]] = field(repr=False)  # windows whose boundaries the seam ratio checks
    quality: dict[str, float] = field(default_factory=dict)


class EvalCounter:
    """Counts UNet batch rows (frame evaluations) through a forward pre-hook."""

    def __init__(self, unet) -> None:
        self.rows = 0
        self._hook = unet.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.rows += int(args[0].shape[0])

    def take(self) -> int:
        rows, self.rows = self.rows, 0
        return rows

    def close(self) -> None:
        self._hook.remove()


def gen_l_video_form(cfg4, comps, inputs, cond, s2) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Gen-L-Video's loop (see the module docstring) on stage 4's overlapping clips. Returns (frames, clips)."""
    import torch

    from vidtune.method.attention import CrossFrameAttention
    from vidtune.method.segments import prompt_segments
    from vidtune.sampling import guided_eps, step_kwargs
    from vidtune.stages import codenoise
    from vidtune.stages.common import DECODE_BATCH, background_plate, split_decode

    c, s = cfg4.codenoise, cfg4.sampling
    if c.mode != "overlap" or c.attention == "global":
        raise ValueError("the Gen-L-Video form runs overlapping clips with a per-clip anchor")
    setup = codenoise.prepare(cfg4, comps, inputs, s2)
    plan = setup.clips.at(setup.start)
    scheds = [copy.deepcopy(setup.scheduler) for _ in plan.windows]
    guides = [
        None if setup.targets is None else codenoise.keep_background_guide(sched, setup.targets[a:b], setup.bg[a:b])
        for sched, (a, b) in zip(scheds, plan.windows)
    ]
    copies = 2 if s.guidance > 1 else 1
    generator = torch.Generator("cpu").manual_seed(c.seed)
    unet, z = comps.unet, setup.z
    xattn = CrossFrameAttention(c.attention)
    xattn.install(unet)
    try:
        with torch.no_grad():
            for j, t in enumerate(setup.timesteps):
                step = setup.start + j
                total, count = torch.zeros_like(z), z.new_zeros(z.shape[0], 1, 1, 1)
                for k, (a, b) in enumerate(plan.windows):
                    sched, frames = scheds[k], list(range(a, b))
                    xattn.set_groups([b - a] * copies)
                    if setup.frame_cond is not None:
                        text = setup.frame_cond[a:b]
                    else:
                        text = setup.clip_bank.take([k]).expand(b - a, -1, -1)
                    feats = cond.features.take(frames, z.device, unet.dtype) if cond.features.num_frames else []
                    x = sched.scale_model_input(z[a:b], t).to(unet.dtype)
                    eps = guided_eps(unet, x, t, text, setup.clip_bank.uncond, feats, s.guidance).to(z.dtype)
                    zk = z[a:b] if guides[k] is None else guides[k](step, t, z[a:b], eps)
                    total[a:b] += sched.step(eps, t, zk, **step_kwargs(sched, s.eta, generator), return_dict=False)[0]
                    count[a:b] += 1
                z = total / count
    finally:
        xattn.remove()
    frames = split_decode(comps.vae, z, DECODE_BATCH, False, "")
    if c.background == "keep":  # stage 4's background plate, exactly as `codenoise.run` applies it
        segments = prompt_segments(inputs.prompts)
        frames = background_plate(frames, s2.fg_pixel, s2.fg, cfg4.fusion, segments, c.transition)
    return frames, plan.windows


def quality(frames: np.ndarray, seq, seams: list[list[tuple[int, int]]]) -> dict[str, float]:
    """Background flicker, warping error (x1e3), the largest seam ratio over `seams`, pose IoU."""
    from vidtune.demo.synthetic.adherence import video_adherence
    from vidtune.evaluation.metrics import Flicker, SeamRatio, WarpErrorDIS, iter_steps

    metrics = [Flicker(), WarpErrorDIS()] + [SeamRatio(w) for w in seams]
    for step in iter_steps(list(frames), masks=list(seq.masks)):
        for m in metrics:
            m.update(step)
    return {
        "bg_flicker": metrics[0].result()["mean_abs_diff_bg"],
        "warp": 1e3 * metrics[1].result()["all"],
        "seam": max(m.result()["ratio"] for m in metrics[2:]),
        "pose_iou": video_adherence(frames, seq)["pose_iou"],
    }


def seam_ratio(frames: np.ndarray, windows: list[tuple[int, int]]) -> float:
    """`metrics.SeamRatio` of a video at the boundaries of `windows`."""
    from vidtune.evaluation.metrics import SeamRatio, iter_steps

    metric = SeamRatio(windows)
    for step in iter_steps(list(frames)):
        metric.update(step)
    return metric.result()["ratio"]


def run_sequence(pipe_comps, motion: str, prompt: str, seed: int, args, workdir: Path) -> dict[str, Measure]:
    """Stages 1-3 once, then every stage-4 form (see the module docstring)."""
    from vidtune import config as C
    from vidtune import pipeline
    from vidtune.config import stage_config
    from vidtune.demo.command import demo_config, write_source
    from vidtune.method import clips as clips_math
    from vidtune.stages import codenoise

    out = workdir / f"{motion}_{seed}"
    seq = write_source(out, motion, args.frames, prompt, seed)
    overrides = [f"codenoise.clip_length={args.clip_length}"] if args.clip_length else []
    overrides += [f"codenoise.stride={args.stride}"] if args.stride else []
    cfg = demo_config(out, prompt, args.steps, seed, overrides)
    inputs = pipeline.build_inputs(cfg, out / "extracted")
    cache = pipeline.StageCache(None, cfg, pipe_comps, inputs)
    for k in (1, 2, 3):
        cache.results[k] = pipeline.compute_stage(k, cache, progress=False, log=lambda s: None)
    s2 = cache.results[2]
    counter = EvalCounter(pipe_comps.unet)
    forms = ["gen_l_video", "vidtune"] + (["overlap"] if args.overlap else [])
    results: dict[str, Measure] = {}
    try:
        for name in forms:
            mode = cfg.codenoise.mode if name == "vidtune" else "overlap"
            cfg4 = stage_config(C.apply_overrides(cfg, [f"codenoise.mode={mode}"]), 4)
            counter.take()
            start = time.perf_counter()
            if name == "gen_l_video":
                frames, windows = gen_l_video_form(cfg4, pipe_comps, inputs, cache.cond, s2)
                seams = [windows]
            else:
                frames = codenoise.run(cfg4, pipe_comps, inputs, cache.cond, s2, tuned=True, progress=False).frames
                clips = clips_math.clip_schedule(cfg4.codenoise, args.frames, cfg.inputs.prompt)
                last = clips.at(cfg.sampling.steps - 1).windows
                overlap = clips_math.overlap_plan(cfg4.codenoise, args.frames, cfg.inputs.prompt).windows
                seams = [overlap] if mode == "overlap" else [last, overlap]
            results[name] = Measure(time.perf_counter() - start, counter.take(), frames, seams)
    finally:
        counter.close()
    glv = results["gen_l_video"]
    for m in results.values():
        m.quality = quality(m.frames, seq, m.seams)
        # paired: the seam ratio at the same boundaries in Gen-L-Video's frames divides out the motion's own
        # pair-to-pair variation (a dance's |dI| varies by tens of percent from pair to pair)
        m.quality["seam_paired"] = max(seam_ratio(m.frames, w) / seam_ratio(glv.frames, w) for w in m.seams)
        # the seam ratio proper: over the ground truth's at the same pairs (1 = the content's own motion there;
        # a seam, an extra change at the boundaries, raises it); the raw ratio is kept as `seam_raw`
        m.quality["seam_raw"] = m.quality["seam"]
        m.quality["seam"] = max(seam_ratio(m.frames, w) / seam_ratio(seq.frames, w) for w in m.seams)
    if args.frames_dir:
        save_grid(Path(args.frames_dir) / f"{motion}_{seed}.png", seq.frames, results)
    return results


def save_grid(path: Path, truth: np.ndarray, results: dict[str, Measure], count: int = 8) -> None:
    """Rows: ground truth, then each form; `count` frames spread over the video; 3x upscaled."""
    import cv2

    idx = np.linspace(0, len(truth) - 1, count).round().astype(int)
    rows = [truth] + [m.frames for m in results.values()]
    grid = np.concatenate([np.concatenate([r[i] for i in idx], axis=1) for r in rows], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = cv2.resize(grid, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def summary(per_seq: list[dict[str, Measure]]) -> dict[str, dict[str, float]]:
    """Per form: total seconds, UNet evaluations per frame per... (total), mean quality over the sequences."""
    out = {}
    for name in per_seq[0]:
        ms = [r[name] for r in per_seq]
        row = {"seconds": sum(m.seconds for m in ms), "evals": sum(m.evals for m in ms)}
        for key in ms[0].quality:
            row[key] = float(np.mean([m.quality[key] for m in ms]))
        out[name] = row
    return out


def report(table: dict[str, dict[str, float]], args, header: str) -> str:
    lines = [
        header,
        "",
        "| form | stage-4 seconds | UNet frame evals | bg flicker | warp x1e3 | seam ratio | seam / truth's | "
        "seam / GLV's | pose IoU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in table.items():
        lines.append(
            f"| {name} | {r['seconds']:.1f} | {int(r['evals'])} | {r['bg_flicker']:.3f} | {r['warp']:.3f} | "
            f"{r['seam_raw']:.3f} | {r['seam']:.3f} | {r['seam_paired']:.3f} | {r['pose_iou']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 sequences of 64 frames (under 5 minutes on 2 cores)")
    parser.add_argument("--sequences", type=int, default=None, help=f"how many of the {len(SEQUENCES)} sequences")
    parser.add_argument("--frames", type=int, default=None, help="frames per sequence (>= 64)")
    parser.add_argument("--clip-length", type=int, default=0, help="codenoise.clip_length (0: the demo preset)")
    parser.add_argument("--stride", type=int, default=0, help="codenoise.stride (0: the demo preset)")
    parser.add_argument("--steps", type=int, default=None, help="sampling.steps (default: the demo preset)")
    parser.add_argument("--overlap", action="store_true", help="also run vidtune's overlap mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames-dir", default="", help="write a PNG grid of frames per sequence here")
    parser.add_argument("--out", default="", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    args.sequences = args.sequences or 3
    args.frames = args.frames or (64 if args.quick else 96)

    import torch

    torch.set_num_threads(args.threads)
    from vidtune.demo.command import demo_model_path
    from vidtune.models import load_components

    comps = load_components(str(demo_model_path()))
    start = time.perf_counter()
    per_seq = []
    with tempfile.TemporaryDirectory(prefix="vidtune-speed-") as tmp:
        for motion, prompt, seed in SEQUENCES[: args.sequences]:
            r = run_sequence(comps, motion, prompt, seed, args, Path(tmp))
            per_seq.append(r)
            print(
                f"{motion} ({seed}): "
                + ", ".join(f"{k} {m.seconds:.1f}s {m.evals} evals {m.quality}" for k, m in r.items()),
                flush=True,
            )
    table = summary(per_seq)
    cmd = "python bench/codenoise_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = (
        f"`{cmd}` ({time.perf_counter() - start:.0f} s; {platform.machine()} {torch.__version__}, "
        f"{args.threads} threads; {args.sequences} sequences x {args.frames} frames; clip_length "
        f"{args.clip_length or 'preset'}, stride {args.stride or 'preset'})"
    )
    text = report(table, args, header)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(text + "\n\n")
    v, g = table["vidtune"], table["gen_l_video"]
    print(
        f"UNet frame evaluations: {g['evals'] / v['evals']:.3f}x fewer; seam ratio over Gen-L-Video's at the same "
        f"frame pairs: {v['seam_paired']:.3f}"
    )
    print(
        f"speedup={g['seconds'] / v['seconds']:.2f} bg_flicker={v['bg_flicker']:.3f}/{g['bg_flicker']:.3f} "
        f"warp={v['warp']:.3f}/{g['warp']:.3f} seam={v['seam']:.3f} pose_iou={v['pose_iou']:.4f}/{g['pose_iou']:.4f} "
        f"seam_raw={v['seam_raw']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
