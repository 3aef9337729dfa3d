"""`vidtune demo` end to end on the embedded demo model (short: 8 frames, few steps)."""

import json

import pytest

from vidtune.demo.command import DEMO_MODEL, run_demo
from vidtune.video import video_info

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL / "model_index.json").is_file(),
    reason="the embedded demo model (src/vidtune/demo/model) is not in this checkout",
)


MOTION, FRAMES, SEED = "dance", 8, 3


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return run_demo(
        out=str(tmp_path_factory.mktemp("demo") / "demo"),
        frames=FRAMES,
        motion=MOTION,
        seed=SEED,
        steps=4,
        overrides=["tuning.steps=4", "codenoise.clip_length=4", "codenoise.stride=2"],
        progress=False,
    )


@pytest.mark.slow
def test_demo_runs_all_stages_and_writes_the_report(demo_run):
    out = demo_run
    assert video_info(out / "final.mp4").num_frames == 8
    side = video_info(out / "side_by_side.mp4")
    assert side.num_frames == 8 and side.width == 4 * (side.height - 20)  # 4 labelled panels: a 20-px label bar
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"ground_truth", "stage1", "stage2", "final"}
    for name in metrics:
        assert metrics[name]["flicker"]["mean_abs_diff"] >= 0
    html = (out / "report.html").read_text()
    assert "data:video/mp4;base64," in html and "stage 1" in html
    for k in (1, 2, 3, 4):
        assert json.loads((out / f"stage{k}" / "done.json").read_text())["stage"] == k


@pytest.mark.slow
def test_final_mp4_keeps_what_the_frames_have(demo_run, tmp_path):
    """final.mp4 is what a user watches: scored at the frames' size, its background flicker stays within
    1.5x the frames' and the figure's colour-keyed IoU within 0.01 (at 64 px a plain yuv420p mp4 lost
    both: the figure's colour bled into its background)."""
    from vidtune.demo.command import DEFAULT_PROMPT, write_source
    from vidtune.demo.synthetic.adherence import video_adherence
    from vidtune.evaluation.evaluate import at_size, evaluate_video
    from vidtune.video import read_frames

    out = demo_run
    record = json.loads((out / "final.video.json").read_text())
    assert record["upscale"] == 4 and record["frames_size"] == [64, 64] and record["size"] == [256, 256]
    assert (video_info(out / "final.mp4").width, video_info(out / "stage4" / "frames").width) == (256, 64)
    seq = write_source(tmp_path / "truth", MOTION, FRAMES, DEFAULT_PROMPT, SEED)  # the demo's own sequence
    masks = str(out / "source" / "gt_masks")
    scores = {}
    for name, video in {"frames": out / "stage4" / "frames", "mp4": out / "final.mp4"}.items():
        bg = evaluate_video(str(video), masks=masks)["metrics"]["flicker"]["mean_abs_diff_bg"]
        frames, _ = at_size(read_frames(video), (64, 64))
        scores[name] = (bg, video_adherence(frames, seq)["pose_iou"])
    assert scores["mp4"][0] <= 1.5 * scores["frames"][0], scores
    assert abs(scores["mp4"][1] - scores["frames"][1]) <= 0.01, scores


def test_the_shipped_model_knows_every_word_of_the_grammar():
    from vidtune.demo.synthetic import grammar

    vocab = json.loads((DEMO_MODEL / "tokenizer" / "vocab.json").read_text())
    words = {w for text in grammar.VOCABULARY_TEXTS for w in text.lower().split()}
    assert words and not sorted(w for w in words if w + "</w>" not in vocab)


def test_a_word_the_model_never_saw_is_one_line_before_any_stage(tmp_path, monkeypatch):
    """A demo model trained before some words of the grammar (an older model folder) stops the demo in
    one line naming them, before stage 1, instead of drawing letters it never learned."""
    import shutil

    from vidtune.demo import command
    from vidtune.errors import VidtuneError

    old = tmp_path / "old_model"
    shutil.copytree(DEMO_MODEL, old)
    vocab = json.loads((old / "tokenizer" / "vocab.json").read_text())
    for word in ("striped</w>", "shirt</w>"):
        vocab.pop(word)
    (old / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    monkeypatch.setattr(command, "demo_model_path", lambda: old)
    prompt = "a red figure in a striped shirt walking on a snowy field during the day"  # in the grammar
    with pytest.raises(VidtuneError, match="trained without the words 'striped', 'shirt'") as e:
        run_demo(out=str(tmp_path / "demo"), frames=8, prompt=prompt, progress=False)
    assert "\n" not in str(e.value) and "train-demo" in str(e.value)
    assert not (tmp_path / "demo" / "stage1").exists()
