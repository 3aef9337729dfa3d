"""Properties of the streaming consistency metrics and of ``evaluate_video``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidtune.errors import VidtuneError
from vidtune.evaluation import foreground as F
from vidtune.evaluation import metrics as M
from vidtune.evaluation.evaluate import evaluate_video, format_table, write_json
from vidtune.video import write_frames_png, write_video

H = W = 64


def texture(seed: int = 0, size: int = H) -> np.ndarray:
    """A smooth random colour texture, uint8 (size, size, 3)."""
    base = np.random.default_rng(seed).integers(0, 256, (size // 4, size // 4, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)


def figure_mask(n: int) -> list[np.ndarray]:
    """A fixed 0/255 square 'figure' in the middle of every frame."""
    m = np.zeros((H, W), np.uint8)
    m[20:44, 24:40] = 255
    return [m.copy() for _ in range(n)]


def add_noise(frames: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def translation(n: int, step: int = 2) -> list[np.ndarray]:
    tex = texture()
    return [np.roll(tex, step * i, axis=1) for i in range(n)]


# ------------------------------------------------------------------------------------------
# Core properties
# ------------------------------------------------------------------------------------------


def test_constant_video_has_no_error() -> None:
    frames = [texture()] * 6
    masks = figure_mask(6)
    flick = M.compute(M.Flicker(), frames, masks)["metrics"]
    assert flick["score"] == 1.0 and flick["mean_abs_diff"] == 0.0 and flick["score_bg"] == 1.0
    warp = M.compute(M.WarpErrorDIS(), frames, masks)["metrics"]
    assert warp["all"] == 0.0 and warp["fg"] == 0.0 and warp["bg"] == 0.0 and warp["visible"] == 1.0
    assert M.compute(M.BgStability(), frames, masks)["metrics"]["std"] == 0.0
    assert M.compute(M.DriftBg(), frames, masks)["metrics"]["mean"] == 0.0
    assert M.compute(M.DriftFgColor(), frames, masks)["metrics"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert M.compute(M.MotionEPE(), frames, reference=frames)["metrics"]["epe"] == 0.0


def test_translation_warps_away_but_flickers() -> None:
    frames = translation(8)
    flick = M.compute(M.Flicker(), frames)["metrics"]
    warp = M.compute(M.WarpErrorDIS(), frames)["metrics"]
    assert flick["mean_abs_diff"] > 5.0 and flick["score"] < 0.98
    assert warp["all"] < 1e-4  # colours in [0, 1]: an RMS error below 1 %
    assert warp["visible"] > 0.9  # only the wrapped-around columns fail the check
    # the output moves exactly like the reference -> no motion error; a static output -> ~2 px
    assert M.compute(M.MotionEPE(), frames, reference=frames)["metrics"]["epe"] == 0.0
    assert M.compute(M.MotionEPE(), [frames[0]] * 8, reference=frames)["metrics"]["epe"] > 1.0


def test_noise_raises_every_error_monotonically() -> None:
    n = 8
    clean = translation(n)
    masks = figure_mask(n)
    # the figure changes colour a little over time, so colour drift is non-zero even unnoised
    for i, f in enumerate(clean):
        f[20:44, 24:40] = np.clip(f[20:44, 24:40].astype(int) + 3 * i, 0, 255)
    values = []
    for sigma in (3.0, 10.0, 25.0):
        frames = add_noise(clean, sigma)
        flick = M.compute(M.Flicker(), frames, masks)["metrics"]
        warp = M.compute(M.WarpErrorDIS(), frames, masks)["metrics"]
        values.append([
            flick["mean_abs_diff"], flick["mean_abs_diff_bg"], 1 - flick["score"], 1 - flick["score_bg"],
            warp["all"], warp["fg"], warp["bg"],
            M.compute(M.BgStability(), frames, masks)["metrics"]["std"],
            M.compute(M.DriftBg(), frames, masks)["metrics"]["mean"],
            M.compute(M.DriftFgColor(), frames, masks)["metrics"]["mean"],
            M.compute(M.MotionEPE(), frames, masks, clean)["metrics"]["epe"],
        ])  # fmt: skip
    low, mid, high = np.array(values)
    assert np.all(low < mid) and np.all(mid < high), values


def test_background_metrics_ignore_the_foreground() -> None:
    rng = np.random.default_rng(3)
    n = 6
    masks = figure_mask(n)
    frames = []
    for _ in range(n):
        f = texture().copy()
        f[20:44, 24:40] = rng.integers(0, 256, (24, 16, 3))  # the figure flickers wildly
        frames.append(f)
    flick = M.compute(M.Flicker(), frames, masks)["metrics"]
    assert flick["mean_abs_diff"] > 5.0
    assert flick["mean_abs_diff_bg"] == 0.0 and flick["score_bg"] == 1.0
    assert M.compute(M.BgStability(), frames, masks)["metrics"]["std"] == 0.0
    assert M.compute(M.DriftBg(), frames, masks)["metrics"]["mean"] == 0.0
    # ... while the foreground colour metric sees it
    assert M.compute(M.DriftFgColor(), frames, masks)["metrics"]["mean"] > 0.05
    # background pixels in *both* frames only: a figure that moves uncovers no counted pixel
    moving = [texture()] * 3
    moving_masks = [np.roll(figure_mask(1)[0], 4 * i, axis=1) for i in range(3)]
    for f, m in zip(moving, moving_masks):
        f[m > 0] = 0
    assert M.compute(M.Flicker(), moving, moving_masks)["metrics"]["mean_abs_diff_bg"] == 0.0


@pytest.mark.parametrize("bucket", [16, 8])
def test_buckets_average_to_the_whole_video(bucket: int) -> None:
    n = 33  # 32 pairs: equal buckets of 16 or 8 pairs
    rng = np.random.default_rng(5)
    sigmas = np.linspace(2, 20, n)  # noise grows over time: buckets differ
    frames = [np.clip(texture() + rng.normal(0, s, (H, W, 3)), 0, 255).astype(np.uint8) for s in sigmas]
    masks = figure_mask(n)
    for name, metric in (("flicker", M.Flicker(bucket)), ("warp_err_dis", M.WarpErrorDIS(bucket))):
        out = M.compute(metric, frames, masks)
        assert [(b["start"], b["end"]) for b in out["buckets"]] == [(s, s + bucket) for s in range(0, 32, bucket)]
        for key, whole in out["metrics"].items():
            mean = np.mean([b["metrics"][key] for b in out["buckets"]])
            assert mean == pytest.approx(whole, rel=1e-9), (name, key)
    flick = M.compute(M.Flicker(bucket), frames)["buckets"]
    assert flick[0]["metrics"]["mean_abs_diff"] < flick[-1]["metrics"]["mean_abs_diff"]  # decay shows


def test_bucket_rule() -> None:
    assert M.num_buckets(1, 16) == 1 and M.num_buckets(17, 16) == 1 and M.num_buckets(18, 16) == 2
    assert M.bucket_spans(20, 16) == [(0, 16), (16, 19)]
    assert [M.bucket_of_frame(i, 16) for i in (0, 1, 16, 17)] == [0, 0, 0, 1]
    # per-frame metrics have as many buckets as pair metrics
    frames = [texture()] * 20
    assert len(M.compute(M.BgStability(), frames)["buckets"]) == len(M.compute(M.Flicker(), frames)["buckets"]) == 2


def test_flicker_curve_is_each_pairs_mean_abs_difference() -> None:
    frames = [np.full((4, 4, 3), v, np.uint8) for v in (0, 10, 4, 4)]
    assert M.flicker_curve(frames) == [10.0, 6.0, 0.0]
    assert M.flicker_curve(frames[:1]) == []
    video = add_noise([texture()] * 6, 12.0)
    assert np.mean(M.flicker_curve(video)) == pytest.approx(M.compute(M.Flicker(), video)["metrics"]["mean_abs_diff"])


def test_drift_slope_sees_a_wandering_background() -> None:
    frames = [np.clip(texture().astype(int) + 2 * i, 0, 255).astype(np.uint8) for i in range(10)]
    drift = M.compute(M.DriftBg(), frames)["metrics"]
    assert drift["slope"] == pytest.approx(2.0, rel=0.05)
    assert M.compute(M.DriftBg(), [texture()] * 10)["metrics"]["slope"] == 0.0


def test_seam_ratio() -> None:
    windows = [(0, 8), (4, 12), (8, 16)]
    assert M.boundary_pairs(windows) == {3, 7, 11, 15}
    uniform = [np.full((16, 16, 3), 10 + 5 * i, np.uint8) for i in range(16)]
    assert M.compute(M.SeamRatio(windows), uniform)["metrics"]["ratio"] == pytest.approx(1.0)
    level, jumpy = 10, []
    for i in range(16):
        level += 20 if i - 1 in (3, 7, 11) else 5  # pair (i-1, i) straddles a clip boundary
        jumpy.append(np.full((16, 16, 3), level, np.uint8))
    out = M.compute(M.SeamRatio(windows), jumpy)["metrics"]
    assert out["ratio"] == pytest.approx(4.0) and out["boundary_mad"] == 20 and out["other_mad"] == 5
    assert math.isnan(M.compute(M.SeamRatio([(0, 16)]), uniform)["metrics"]["ratio"])  # one clip: no seam
    with pytest.raises(ValueError, match="half-open"):
        M.boundary_pairs([(5, 5)])


def test_stream_length_and_size_errors() -> None:
    frames = [texture()] * 4
    with pytest.raises(M.LengthMismatch) as err:
        M.compute(M.Flicker(), frames, figure_mask(3))
    assert (err.value.items, err.value.frames) == (3, 4)
    with pytest.raises(M.LengthMismatch) as err:
        M.compute(M.Flicker(), frames, figure_mask(6))
    assert (err.value.items, err.value.frames) == (6, 4)
    with pytest.raises(ValueError, match="mask of size"):
        M.compute(M.Flicker(), frames, [np.zeros((8, 8), np.uint8)] * 4)
    with pytest.raises(ValueError, match="uint8"):
        M.compute(M.Flicker(), [f.astype(np.float32) for f in frames])


def test_registry_lists_every_metric() -> None:
    assert set(M.METRICS) == {
        "flicker", "warp_err_dis", "bg_stability", "drift_bg", "drift_fg_color", "seam_ratio", "motion_epe",
        "clip_scores", "dino_subject_consistency",
    }  # fmt: skip
    assert set(F.METRICS) == {"fg_appearance", "drift_long"}  # the figure metrics build on metrics' stream
    assert all(name in M.METRICS or name in F.METRICS for name in M.WEIGHT_FREE)


# ------------------------------------------------------------------------------------------
# evaluate_video
# ------------------------------------------------------------------------------------------


def _write_masks(folder: Path, masks: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, m in enumerate(masks):
        cv2.imwrite(str(folder / f"mask_{i}.png"), m)
    return folder


def test_evaluate_folder_equals_mp4(tmp_path: Path) -> None:
    n = 12
    # a translating texture with global brightness flicker: content H.264 keeps (noise it would smooth)
    offsets = np.random.default_rng(2).integers(-10, 11, n)
    frames = [np.clip(f.astype(int) + o, 0, 255).astype(np.uint8) for f, o in zip(translation(n), offsets)]
    folder = tmp_path / "frames"
    write_frames_png(frames, folder)
    mp4 = write_video(tmp_path / "video.mp4", frames, fps=8, quality=10)
    masks = _write_masks(tmp_path / "masks", figure_mask(n))
    a = evaluate_video(str(folder), masks=str(masks), bucket=4)
    b = evaluate_video(str(mp4), masks=str(masks), bucket=4)
    assert a["num_frames"] == b["num_frames"] == n and len(a["buckets"]) == len(b["buckets"]) == 3
    # codec tolerance: H.264 yuv420p at quality 10 changes pixels by ~1-3 levels
    tolerance = {("flicker", "mean_abs_diff"): 0.05, ("flicker", "mean_abs_diff_bg"): 0.05,
                 ("warp_err_dis", "all"): 0.1, ("warp_err_dis", "bg"): 0.1, ("bg_stability", "std"): 0.05,
                 ("drift_bg", "mean"): 0.05, ("drift_fg_color", "mean"): 0.2}  # fmt: skip
    for (name, key), rel in tolerance.items():
        assert b["metrics"][name][key] == pytest.approx(a["metrics"][name][key], rel=rel), (name, key)
    for ba, bb in zip(a["buckets"], b["buckets"]):
        assert bb["metrics"]["flicker"]["mean_abs_diff"] == pytest.approx(
            ba["metrics"]["flicker"]["mean_abs_diff"], rel=0.05
        )
    # and the folder result equals the in-memory metrics exactly
    assert a["metrics"]["flicker"] == M.compute(M.Flicker(4), frames, figure_mask(n))["metrics"]


def test_evaluate_mask_count_mismatch(tmp_path: Path) -> None:
    write_frames_png([texture()] * 5, tmp_path / "frames")
    masks = _write_masks(tmp_path / "masks", figure_mask(4))
    with pytest.raises(VidtuneError) as err:
        evaluate_video(str(tmp_path / "frames"), masks=str(masks))
    assert str(masks) in str(err.value) and "4 masks" in str(err.value) and "5 frames" in str(err.value)
    with pytest.raises(VidtuneError, match="not a folder"):
        evaluate_video(str(tmp_path / "frames"), masks=str(tmp_path / "nope"))


def test_evaluate_json_and_table(tmp_path: Path) -> None:
    frames = translation(10)
    write_frames_png(frames, tmp_path / "frames")
    result = evaluate_video(
        str(tmp_path / "frames"), reference=str(tmp_path / "frames"), windows=[(0, 6), (4, 10)], bucket=4, prompt="x"
    )
    assert set(result["metrics"]) == {*M.WEIGHT_FREE, "seam_ratio", "motion_epe"}
    assert result["metrics"]["motion_epe"]["epe"] == 0.0
    assert result["notes"]  # a prompt without --clip is reported, not silently dropped
    assert result["buckets"][-1]["metrics"]["drift_bg"]["slope"] is None  # one frame: NaN -> None
    write_json(tmp_path / "out.json", result)
    assert json.loads((tmp_path / "out.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == result
    table = format_table(result)
    lines = table.splitlines()
    assert "flicker.mean_abs_diff" in table and "t8-8" in lines[1]
    assert len({len(line) for line in lines[1:] if not line.startswith("note")}) == 1  # aligned


# ------------------------------------------------------------------------------------------
# CLIP / DINO on tiny random models
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    torch = pytest.importorskip("torch")
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel
    from transformers.models.clip import CLIPImageProcessorPil
    from transformers.models.vit import ViTImageProcessorPil

    from vidtune.tokenizer import write_clip_tokenizer

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    clip = root / "clip"
    vocab = write_clip_tokenizer(clip, ["a red figure dancing on a beach"])
    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab, max_position_embeddings=77, bos_token_id=vocab - 2, eos_token_id=vocab - 1, **tiny
        ),
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(clip)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip)
    dino = root / "dino"
    ViTModel(ViTConfig(image_size=32, patch_size=8, **tiny)).save_pretrained(dino)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(dino)
    return str(clip), str(dino)


def test_clip_and_dino_on_tiny_models(tiny_models: tuple[str, str]) -> None:
    clip, dino = tiny_models
    frames = add_noise(translation(5), 10.0)
    cons = M.compute(M.ClipScores(clip, batch_size=2), frames)["metrics"]
    text = M.compute(M.ClipScores(clip, "a red figure dancing"), frames)["metrics"]
    subj = M.compute(M.DinoSubjectConsistency(dino, batch_size=3), frames)["metrics"]
    for v in (*cons.values(), *text.values()):
        assert math.isfinite(v) and -100.0 <= v <= 100.0
    assert 0.0 <= subj["score"] <= 1.0
    # identical frames: perfectly consistent
    same = [frames[0]] * 4
    assert M.compute(M.ClipScores(clip), same)["metrics"]["consistency"] == pytest.approx(100.0, abs=1e-3)
    assert M.compute(M.ClipScores(clip), same)["metrics"]["consistency_all_pairs"] == pytest.approx(100.0, abs=1e-3)
    assert M.compute(M.DinoSubjectConsistency(dino), same)["metrics"]["score"] == pytest.approx(1.0, abs=1e-5)


def test_evaluate_with_local_models(tiny_models: tuple[str, str], tmp_path: Path) -> None:
    clip, dino = tiny_models
    write_frames_png(translation(6), tmp_path / "frames")
    result = evaluate_video(str(tmp_path / "frames"), prompt="a red figure", clip=clip, dino=dino, metrics=["flicker"])
    assert set(result["metrics"]) == {"flicker", "clip", "dino_subject_consistency"}
    assert set(result["metrics"]["clip"]) == {"consistency", "consistency_all_pairs", "text_alignment"}
    assert all(math.isfinite(v) for v in result["metrics"]["clip"].values())
    with pytest.raises(VidtuneError, match="config.json"):
        evaluate_video(str(tmp_path / "frames"), clip=str(tmp_path))
