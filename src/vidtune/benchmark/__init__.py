"""`vidtune ablate`: the baselines and the ablation of the four stages, on the synthetic world.

For every sequence (a motion, a prompt and a seed of the synthetic world, rendered with its
ground truth), the same poses, prompt and seeds go through every variant below, and each
variant's video is scored with the weight-free metrics (consistency paired with motion
following, docs/benchmark.md) against the ground truth's exact masks and the pose images.

Variants (`VARIANTS`)::

    per_frame               stage 1 only: every frame from its own noise (SD frame by frame)
    per_frame_shared_noise  stage 1 with one shared initial noise (separate.noise_mode = shared)
    t2v_zero                Text2Video-Zero-style: base UNet, the whole video as ONE clip with
                            first-frame cross-frame attention, shared noise, from pure noise
    gen_l_video             Gen-L-Video: base UNet, overlapping clips co-denoised, uniform merge
                            weights, middle-frame anchor, independent noise per frame (as its code)
    freenoise               FreeNoise-style: gen_l_video's clips and anchor with the noise
                            rescheduled across windows (each window a shuffle of the previous one's)
    stages_1_2              the stage-2 frames (average fusion at step t, denoised on)
    stages_1_2_sdedit       the base UNet re-denoising the stage-2 frames exactly as stages_1_2_3
                            does (full's init: fused, SDEdit strength, shared noise; clips of one
                            frame, no cross-frame attention): stages_1_2_3 minus the tuning
    stages_1_2_3            the tuned UNet without co-denoising: stage 4 with clips of one frame,
                            no cross-frame attention, the full method's init (fused, shared noise)
    full                    all four stages with the demo presets
    full_global             `full` with one global anchor frame (codenoise.attention = global)
    ground_truth            the rendered video: the consistency ceiling

Reuse: one base run folder per sequence holds stages 1-3; each stage-4 variant has its own run
folder holding hard links (copies where links fail) of the base's inputs/ and stage1/ (and
stage2/, stage3/ only where it uses them) and runs `pipeline.run(..., stages=[4])`. The
base-model variants never see a stage3/ folder and run on components that stage 3 never
touched (stage 3 tunes a private copy of the UNet per sequence), so their done.json says
``"unet": "base"``; the tuned variants' says ``"tuned"``. Reruns skip what is done.

Suites (no config file): ``default`` = `DEFAULT_SEQUENCES` x every variant; ``benchmark`` =
`BENCHMARK_SEQUENCES` (12 sequences: all 7 motions, 5 scenes, 3 times of day, 24 to 96 frames,
three prompt schedules of 2-3 segments) x `BENCHMARK_VARIANTS` (the baselines against the
defaults). Every metric has a 95% bootstrap interval over sequences; schedules add the
transition ratio and the worst segment's prompt adherence.

Config (TOML, every part optional; no file = the suite's sequences on the embedded demo model)::

    [ablation]
    frames = 24                         # default length of every sequence
    variants = ["per_frame", "full"]    # a subset of VARIANTS (default: all), in table order

    [[sequences]]                       # one table per sequence (default: DEFAULT_SEQUENCES)
    name = "walk"                       # folder / row name (default: the motion)
    motion = "walk"                     # vidtune.demo.synthetic.motions: walk, run, wave, jump, dance, ...
    prompt = "a blue figure walking on a beach at sunset"   # a sentence of the synthetic grammar
    seed = 11                           # scene + motion seed (offset past the training seeds) and
                                        # the seed of every stage
    frames = 24                         # optional, overrides [ablation] frames
    prompts = { "0" = "a red figure walking on a snowy field during the day", "12" = "a red figure walking on a beach at sunset" }
                                        # optional: a prompt schedule (first frame -> prompt), as inputs.prompts

    [run.sampling]                      # optional: run-config fields over the demo presets, with
    steps = 20                          # the sections and keys of a run TOML ([run.model] path =
                                        # "..." picks another model; relative to this file)

Command-line `--set section.key=value` overrides apply to the base run config after the file,
and each variant's own settings (e.g. t2v_zero's clip length) apply last.

Outputs in OUT: ablation.json (every number per sequence, mean and std over sequences),
ablation.md (variants x metrics, mean [95% bootstrap interval]), metrics.png (bar charts), flicker_curves.png,
sequences/<name>/grid.mp4 (every variant tiled and labelled), report.html (all of it embedded).

Modules: `spec` (what is compared: variants, sequences, suites, the config file, each variant's run
config), `runner` (running the variants of a sequence, reuse and fingerprints, `run_ablation`),
`scoring` (the metrics of one sequence, statistics over sequences), `report` (tables, ablation.md,
report.html, plots, grid videos).
"""

from vidtune.benchmark.runner import run_ablation

__all__ = ["run_ablation"]
