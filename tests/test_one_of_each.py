"""One model-source resolver and one inputs builder: the resume key sees the folder the loader loads,
and the pipeline, `vidtune plan` and the API build (and count) the same inputs with the same checks."""

import json
from pathlib import Path

import numpy as np
import pytest

from vidtune import config as C
from vidtune import fingerprint, inputs, models, pipeline
from vidtune.errors import VidtuneError
from walking import BODY25_STANDING


def loader_folder(source: str) -> str:
    return str(models.resolve_source(source, "Stable Diffusion model", models.SD_REPO, "model_index.json").local)


def test_the_resume_key_lists_the_folder_the_loader_loads(tiny_model_dir):
    identity = fingerprint.source_identity(str(tiny_model_dir), "model_index.json")
    assert identity["folder"] == str(Path(loader_folder(str(tiny_model_dir))).resolve())


def test_offline_a_cached_hub_id_is_the_same_snapshot_for_both(tiny_model_dir, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(tiny_model_dir / name))
    identity = fingerprint.source_identity("someone/tiny-sd", "model_index.json")
    assert identity["folder"] == str(tiny_model_dir.resolve()) == str(Path(loader_folder("someone/tiny-sd")).resolve())
    assert models.local_folder("someone/tiny-sd", "unet/config.json") == tiny_model_dir  # the probe's depth


def test_a_wrong_source_is_no_folder_for_those_who_only_look(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert models.local_folder(str(tmp_path / "model.safetensors"), "model_index.json") is None
    with pytest.raises(VidtuneError, match="single-file checkpoint"):
        loader_folder(str(tmp_path / "model.safetensors"))


def _poses(folder, n=5):
    folder.mkdir(parents=True)
    for i in range(n):
        kps = np.concatenate([BODY25_STANDING + [4 * i, 0], np.full((25, 1), 0.9)], axis=1)
        people = [{"person_id": [-1], "pose_keypoints_2d": kps.flatten().tolist()}]
        (folder / f"c_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def test_pipeline_plan_and_prepare_build_and_count_the_same_inputs(tmp_path):
    cfg = C.apply_overrides(
        C.RunConfig(),
        [f"inputs.poses={_poses(tmp_path / 'json')}", "inputs.prompt=a", "inputs.height=32", "inputs.width=32"],
    )
    built = pipeline.build_inputs(cfg, tmp_path / "extracted")
    written = inputs.prepare(cfg.inputs, tmp_path / "inputs", pipeline.windows_for(cfg))
    assert np.array_equal(built.pose_images, written.pose_images) and built.prompts == written.prompts
    assert inputs.count(cfg.inputs)[:2] == (built.num_frames, built.fps)


@pytest.mark.parametrize(
    "overrides, message",
    [(["inputs.height=36"], "multiples of 8"), (["inputs.poses="], "inputs.poses is empty")],
)
def test_every_builder_makes_the_same_checks(tmp_path, overrides, message):
    cfg = C.apply_overrides(C.RunConfig(), [f"inputs.poses={_poses(tmp_path / 'json')}", "inputs.prompt=a", *overrides])
    for build in (
        lambda: pipeline.build_inputs(cfg, tmp_path / "extracted"),
        lambda: inputs.prepare(cfg.inputs, tmp_path / "inputs"),
        lambda: inputs.count(cfg.inputs),
    ):
        with pytest.raises(VidtuneError, match=message):
            build()
