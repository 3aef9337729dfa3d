"""Stage 4's memory and speed against the video length (run by hand; not part of the test suite).

    python bench/codenoise_memory.py        # tiny random model, CPU -> bench/results/codenoise_memory.md
    python bench/codenoise_memory.py --frames 16 64 --steps 2 --out /tmp/table.md

1. Memory: for N = 16, 64, 256, 1024 frames, a FRESH process loads the model, makes N random pose
   images and runs stage 4's loop (adapter features once per frame, clip plan, cross-frame
   attention, `codenoise_eps_fn`, one scheduler step per timestep) for a few steps. Peak memory is
   the process's peak resident set (`resource.getrusage(...).ru_maxrss`) minus its resident set
   right after loading the model (tracemalloc does not see torch's allocations); on CUDA it is
   `torch.cuda.max_memory_allocated()` minus the model's allocation. The per-frame tensors (pose
   images, adapter features, video latents) are reported separately; what is left must not grow
   with N.
2. Speed: for (M, S) = (16, 4), (16, 8), (16, 16) on one video, seconds per step per frame (the
   median step) and UNet frame evaluations per frame per step (counted at the UNet's forward:
   every batch row, so classifier-free guidance counts twice).

Decoding (after the loop, a few frames at a time) is not part of what is measured here.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "codenoise_memory.md"
MIB = 2**20


def _rss() -> int:
    """Current resident set in bytes (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _maxrss() -> int:
    """Peak resident set of this process in bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(job: dict) -> dict:
    """One measurement in this (fresh) process: stage 4's loop on `job["frames"]` random pose frames."""
    import numpy as np
    import torch

    torch.set_num_threads(job["threads"])
    from vidtune.config import CodenoiseConfig
    from vidtune.method.attention import CrossFrameAttention
    from vidtune.method.clips import plan_clips
    from vidtune.models import load_components, make_scheduler
    from vidtune.sampling import adapter_features, denoise, initial_noise, make_prompt_bank, prepare_scheduler
    from vidtune.stages.codenoise import codenoise_eps_fn

    device = torch.device(job["device"])
    comps = load_components(job["model"], device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _rss()

    n, size, prompt = job["frames"], job["size"], "a person dancing"
    cfg = CodenoiseConfig(
        clip_length=min(job["clip_length"], n),
        stride=min(job["stride"], n),
        attention=job["attention"],
        max_batch_frames=job["max_batch_frames"],
    )
    poses = np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        features = adapter_features(comps.adapter, poses)
    plan = plan_clips(cfg, n, prompt)
    clip_bank = make_prompt_bank(comps.tokenizer, comps.text_encoder, plan.prompts)
    anchor_bank = make_prompt_bank(comps.tokenizer, comps.text_encoder, [prompt])
    scheduler = make_scheduler(job["scheduler"], comps.scheduler)
    timesteps = prepare_scheduler(scheduler, job["steps"], device)
    f = comps.vae_scale_factor
    z = initial_noise(n, (comps.latent_channels, size // f, size // f), 0, device=device) * scheduler.init_noise_sigma

    rows: list[int] = []  # UNet batch rows, every forward
    counter = comps.unet.register_forward_pre_hook(
        lambda mod, args, kwargs: rows.append(args[0].shape[0]), with_kwargs=True
    )
    stamps: list[float] = []
    xattn = CrossFrameAttention(cfg.attention)
    xattn.install(comps.unet)
    try:
        eps_fn = codenoise_eps_fn(
            comps.unet, xattn, plan, clip_bank, anchor_bank, features, job["guidance"], cfg.max_batch_frames
        )
        with torch.no_grad():
            x0 = denoise(
                z,
                scheduler,
                timesteps,
                eps_fn,
                progress=False,
                hook=lambda step, t, latents: stamps.append(time.perf_counter()),
            )
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    finally:
        xattn.remove()
        counter.remove()
    peak = torch.cuda.max_memory_allocated() if cuda else _maxrss()
    step_seconds = [b - a for a, b in zip(stamps, stamps[1:])]
    return {
        "frames": n,
        "clips": len(plan.windows),
        "clip_length": cfg.clip_length,
        "stride": cfg.stride,
        "peak_over_model": peak - base,
        "pose_images": poses.nbytes,
        "features": sum(level.nbytes for level in features.levels),
        "latents": x0.nbytes,
        "step_seconds": step_seconds,
        "unet_rows": sum(rows),
        "steps": len(timesteps),
    }


def run_job(job: dict) -> dict:
    """`worker(job)` in a fresh Python process (so that each peak is its own)."""
    out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {job} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_table(results: list[dict], latent_copies: int) -> str:
    lines = [
        "| N frames | clips | peak over model (MiB) | pose images (MiB) | adapter features (MiB) | "
        f"latents x{latent_copies} (MiB) | rest (MiB) | s / step / frame |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        per_frame = r["pose_images"] + r["features"] + latent_copies * r["latents"]
        rest = r["peak_over_model"] - per_frame
        step = statistics.median(r["step_seconds"]) / r["frames"]
        lines.append(
            f"| {r['frames']} | {r['clips']} | {r['peak_over_model'] / MIB:.1f} | "
            f"{r['pose_images'] / MIB:.2f} | {r['features'] / MIB:.2f} | "
            f"{latent_copies * r['latents'] / MIB:.2f} | {rest / MIB:.1f} | {step * 1e3:.2f} ms |"
        )
    return "\n".join(lines)


def speed_table(results: list[dict]) -> str:
    lines = [
        "| M | S | N | clips | s / step / frame | UNet frame evals / frame / step | expected |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        step = statistics.median(r["step_seconds"]) / r["frames"]
        evals = r["unet_rows"] / r["steps"] / r["frames"]
        expected = r["clips"] * r["clip_length"] * 2 / r["frames"]  # CFG: x 2
        lines.append(
            f"| {r['clip_length']} | {r['stride']} | {r['frames']} | {r['clips']} | {step * 1e3:.2f} ms | "
            f"{evals:.3f} | {expected:.3f} |"
        )
    return "\n".join(lines)


def sd_table(frames: list[int]) -> str:
    """vidtune.plan's estimate of the same parts for SD v1-4 + its openpose adapter, 512x512, fp16, CFG."""
    from vidtune.plan import _COUNTERS, SD14_CONFIGS, ModelSizes, memory_estimate

    sizes = ModelSizes(
        configs=SD14_CONFIGS,
        parameters={k: _COUNTERS[k](c) for k, c in SD14_CONFIGS.items()},
        counted=dict.fromkeys(SD14_CONFIGS, "assumed"),
        source="SD v1-4",
    )
    lines = [
        "| N frames | pose images (host) | adapter features | latents x8 | one batch's activations | "
        "decoding (4 frames, fp32) | weights | peak (device) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in frames:
        e = memory_estimate(sizes, n, 512, 512, batch_frames=16, guidance=True, element_bytes=2)
        lines.append(
            f"| {n} | {e.pose_images / MIB:.0f} MiB | {e.features / MIB:.0f} MiB | "
            f"{e.latents / MIB:.0f} MiB | {e.activations / MIB:.0f} MiB | {e.decoding / MIB:.0f} MiB | "
            f"{e.weights / MIB:.0f} MiB | {e.peak / 2**30:.2f} GiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="model folder (default: a fresh tiny random model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--speed-frames", type=int, default=64, help="video length of the (M, S) timings")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--speed-steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    from vidtune.plan import LATENT_COPIES

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from vidtune.testing import make_tiny

            model = str(make_tiny(Path(tmp) / "tiny", seed=0, with_sam=False))
        base = dict(
            model=model,
            device=args.device,
            size=args.size,
            threads=args.threads,
            scheduler="ddim",
            guidance=7.5,
            attention="middle",
            max_batch_frames=16,
        )
        memory = []
        for n in args.frames:
            memory.append(run_job({**base, "frames": n, "steps": args.steps, "clip_length": 16, "stride": 8}))
            print(f"N = {n}: {memory[-1]['peak_over_model'] / MIB:.1f} MiB over the model", file=sys.stderr)
        speed = []
        for m, s in ((16, 4), (16, 8), (16, 16)):
            speed.append(
                run_job({**base, "frames": args.speed_frames, "steps": args.speed_steps, "clip_length": m, "stride": s})
            )
            print(f"(M, S) = ({m}, {s}) done", file=sys.stderr)

    import torch

    where = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS (ru_maxrss)"
    text = "\n".join(
        [
            "# Stage 4 (co-denoising): memory and speed against the video length",
            "",
            f"`python bench/codenoise_memory.py` on {platform.machine()} {args.device}, torch {torch.__version__}, "
            f"{args.threads} CPU thread(s); model: {'tiny random (make_tiny)' if args.model is None else args.model}, "
            f"{args.size}x{args.size} px, random pose images, DDIM, guidance 7.5 (CFG), attention `middle`, "
            "max_batch_frames 16. Each row is a fresh process.",
            "",
            f"## Memory (M = 16, S = 8, {args.steps} steps; {where} minus the process after loading the model)",
            "",
            "Per-frame tensors: the pose images (uint8), the T2I-Adapter features of every frame (computed once), "
            f"and the video latents counted {LATENT_COPIES} times (vidtune.plan.LATENT_COPIES: z_t, model input, merged "
            "eps, merge sums, scheduler temporaries). *rest* = peak - those: one batch of clips' activations, "
            "allocator and library overheads; it must not grow with N.",
            "",
            memory_table(memory, LATENT_COPIES),
            "",
            f"## Speed ({args.speed_frames} frames, {args.speed_steps} steps; median step)",
            "",
            speed_table(speed),
            "",
            "## The same parts for SD v1-4 (estimated, not measured)",
            "",
            "`vidtune.plan.memory_estimate` for SD v1-4 + the openpose T2I-Adapter at 512x512, fp16, CFG, "
            "max_batch_frames 16; peak = weights + latents + features + max(activations, decoding), since the "
            "features are still held while the frames are decoded:",
            "",
            sd_table(args.frames),
            "",
        ]
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
