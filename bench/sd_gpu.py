"""vidtune at Stable Diffusion v1-4's size on one GPU: each stage's frames per second, peak GPU memory at
16 / 64 / 256 frames, and the fraction of the bf16 FLOP floor the UNet reaches.

    python bench/sd_gpu.py [--frames 16,64,256] [--dtype bf16] [--out bench/results/gpu.md]
    python bench/sd_gpu.py --tiny        # the same code path on tiny random components on the CPU (smoke test)

What runs: SD v1-4's UNet (859.5M parameters), VAE and CLIP text encoder, the T2I-Adapter openpose and SAM
ViT-B, each built from its real config (``--models``, default ``../shared/data/models``) with random weights
(no weights can be downloaded here; the cost of a forward does not depend on the weights' values), at
512x512 with vidtune's SD defaults: 50 DDIM steps, CFG 7.5, stage 2 from step t = 0.5, stage 3's 300 steps
of full-UNet tuning (mixed precision, gradient checkpointing), stage 4 from stage 2 at strength 0.4 in
shifted clips of 16 frames. The content is a synthetic walk (the demo world's motion) rendered as pose maps.

Per frame count and stage: seconds (CUDA-synchronised), frames per second, peak GPU memory
(``torch.cuda.max_memory_allocated`` since the stage began) and UNet frame evaluations (a forward pre-hook
counting batch rows: CFG's two rows count twice). FLOP floor: one UNet frame evaluation at 512x512 costs
0.8035 TFLOP (1.607 per frame per denoising step with CFG); the fraction is evaluations x 0.8035 TFLOP /
seconds over the GPU's dense bf16 peak, taken from its name (H100 / H200 SXM 989, A100 312, L40S 362,
L4 121 TFLOP/s) or else measured as the best of a few 8192^3 bf16 matmuls. Stage 3's evaluations are
forward + backward (about 3x a forward's FLOPs) and are reported without a fraction.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

UNET_TFLOP_PER_EVAL = 0.8035  # SD v1-4 UNet, one frame, 512x512 (1.607 TFLOP per frame per step with CFG)
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}
PROMPT = "a person walking on a beach at sunset, photo"
DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "models"


def build_components(models: Path, device, dtype):
    """SD v1-4-sized components with random weights from the real configs, on `device`."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, SamConfig, SamModel, SamProcessor

    from vidtune.models import Components

    sd = models / "sd-v1-4"
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the GPU: 1.1B random parameters are slow on the host
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(sd / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(sd / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(sd / "text_encoder"))
        adapter = T2IAdapter.from_config(T2IAdapter.load_config(models / "t2iadapter-openpose-sd14v1"))
        sam = SamModel(SamConfig.from_pretrained(models / "sam-vit-base"))
    for m in (unet, text, adapter, sam):
        m.to(dtype=dtype).eval().requires_grad_(False)
    vae.eval().requires_grad_(False)
    return Components(
        vae=vae,
        unet=unet,
        text_encoder=text,
        tokenizer=CLIPTokenizer.from_pretrained(sd / "tokenizer"),
        scheduler=DDIMScheduler.from_pretrained(sd / "scheduler"),
        adapter=adapter,
        sam_model=sam,
        sam_processor=SamProcessor.from_pretrained(models / "sam-vit-base"),
        device=torch.device(device),
        dtype=dtype,
        sources={"model": "random weights, SD v1-4 configs"},
    )


def tiny_components(tmp: Path):
    """Tiny random components in the diffusers layout (vidtune.testing), for --tiny on the CPU."""
    from vidtune.models import load_components
    from vidtune.testing import make_tiny

    return load_components(make_tiny(tmp / "tiny", sample_size=32, vocab_texts=[PROMPT]))


def walk_inputs(frames: int, size: int):
    """A synthetic walk as pose maps (the demo world's motion, rendered like OpenPose)."""
    from vidtune.demo.synthetic.motions import motion_keypoints
    from vidtune.inputs import VideoInputs
    from vidtune.poses import render_pose

    kps = motion_keypoints("walk", frames, height=size, width=size, seed=0)
    poses = [render_pose(k, size, size) for k in kps]
    import numpy as np

    return VideoInputs(np.stack(poses), kps, [PROMPT] * frames, 8.0, "synthetic walk")


def peak_tflops(device) -> tuple[float, str]:
    """The GPU's dense bf16 peak (from its name, else a measured matmul) in TFLOP/s, and where it came from."""
    import torch

    if device.type != "cuda":
        return float("nan"), "no GPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"{name}: datasheet dense bf16"
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(5):
        torch.cuda.synchronize()
        start = time.perf_counter()
        a @ a
        torch.cuda.synchronize()
        best = max(best, 2 * 8192**3 / (time.perf_counter() - start) / 1e12)
    return best, f"{name}: measured 8192^3 bf16 matmul"


class EvalCounter:
    """UNet frame evaluations (batch rows of every forward)."""

    def __init__(self, unet) -> None:
        self.count = 0
        self._hook = unet.register_forward_pre_hook(self._add, with_kwargs=True)

    def _add(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.count += int(sample.shape[0])

    def take(self) -> int:
        n, self.count = self.count, 0
        return n


def run_frames(pipe, frames: int, size: int, device, counter: EvalCounter) -> list[dict]:
    """Stages 1-4 on `frames` frames; one row per stage."""
    import torch

    inputs = walk_inputs(frames, size)
    rows, previous = [], None
    calls = [
        ("1 separate", lambda: pipe.separate(inputs, progress=False)),
        ("2 fusion", lambda: pipe.fuse(previous, progress=False)),
        ("3 tuning", lambda: pipe.tune(previous, progress=False)),
        ("4 co-denoising", lambda: pipe.codenoise(s2, progress=False)),
    ]
    s2 = None
    for name, call in calls:
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        counter.take()
        start = time.perf_counter()
        result = call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        rows.append({"frames": frames, "stage": name, "seconds": seconds, "peak_gib": peak, "evals": counter.take()})
        if name.startswith("2"):
            s2 = result
        if not name.startswith("3"):
            previous = result
        print(f"sd_gpu: {frames} frames, stage {name}: {seconds:.1f} s, peak {peak:.2f} GiB", flush=True)
    return rows


def report(rows: list[dict], peak: float, peak_source: str, args, header: str) -> str:
    lines = [
        "# vidtune at SD v1-4 size on one GPU",
        "",
        f"`python bench/sd_gpu.py {' '.join(sys.argv[1:])}`".replace("` ", "`"),
        "",
        header,
        f"FLOP floor: {peak:.0f} TFLOP/s ({peak_source}); one UNet frame evaluation = {UNET_TFLOP_PER_EVAL} TFLOP.",
        "",
        "| frames | stage | seconds | frames/s | peak GiB | UNet frame evals | TFLOP/s | of the bf16 floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r["evals"] * UNET_TFLOP_PER_EVAL / r["seconds"]
        # the FLOP count is SD's at 512x512 (not the tiny model's), and stage 3's evaluations are training steps
        flops = "-" if args.tiny or r["stage"].startswith("3") else f"{rate:.0f} | {rate / peak:.1%}"
        lines.append(
            f"| {r['frames']} | {r['stage']} | {r['seconds']:.1f} | {r['frames'] / r['seconds']:.2f} | "
            f"{r['peak_gib']:.2f} | {r['evals']} | {flops if flops != '-' else '- | -'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="16,64,256", help="comma-separated frame counts")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="folder with sd-v1-4/, t2iadapter-*, sam-*")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    parser.add_argument("--tiny", action="store_true", help="tiny random components on the CPU (smoke test)")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides section.key=value")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    from vidtune.api import VidtunePipeline
    from vidtune.config import RunConfig, apply_overrides

    tmp = Path(tempfile.mkdtemp(prefix="vidtune-sd-gpu-"))
    if args.tiny:
        device, size = torch.device("cpu"), 32
        comps = tiny_components(tmp)
        overrides = ["sampling.steps=4", "tuning.steps=2", "codenoise.clip_length=4", "model.sam="]
    else:
        if not torch.cuda.is_available():
            print("sd_gpu: no CUDA device; run it on a GPU machine, or --tiny for the CPU smoke test", file=sys.stderr)
            return 2
        device, size = torch.device("cuda"), 512
        comps = build_components(args.models, device, torch.bfloat16 if args.dtype == "bf16" else torch.float16)
        overrides = []
    cfg = apply_overrides(
        RunConfig(),
        [f"inputs.height={size}", f"inputs.width={size}", f"inputs.prompt={PROMPT}", *overrides, *args.set],
    )
    pipe = VidtunePipeline(comps, cfg)
    counter = EvalCounter(comps.unet)
    peak, peak_source = peak_tflops(device)
    rows = []
    for frames in (int(f) for f in args.frames.split(",")):
        rows += run_frames(pipe, frames, size, device, counter)
    header = (
        f"Machine: {platform.node()}, {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
        f"torch {torch.__version__}, {str(comps.dtype).removeprefix('torch.')} (VAE fp32); components: "
        f"{'tiny random (--tiny)' if args.tiny else comps.sources['model']}"
    )
    text = report(rows, peak, peak_source, args, header)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
