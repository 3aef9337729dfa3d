"""The model's identity in the resume key follows its weight files."""

from vidtune import fingerprint


def test_model_identity_follows_the_weight_files(tmp_path):
    from vidtune.config import ModelConfig

    (tmp_path / "m" / "unet").mkdir(parents=True)
    (tmp_path / "m" / "model_index.json").write_text("{}")
    weights = tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"a" * 10)
    cfg = ModelConfig(path=str(tmp_path / "m"), adapter="")
    first = fingerprint.model_identity(cfg)
    assert fingerprint.model_identity(cfg) == first
    weights.write_bytes(b"b" * 11)  # new weights saved at the same path
    assert fingerprint.model_identity(cfg) != first
