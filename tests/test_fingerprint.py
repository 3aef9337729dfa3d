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


def test_a_model_cards_documents_are_not_part_of_the_identity(tmp_path):
    """Editing the README, tables or pictures next to the weights keeps every finished stage; the tokenizer's
    merges.txt is read by the loader and stays in."""
    from vidtune.config import ModelConfig

    (tmp_path / "m" / "tokenizer").mkdir(parents=True)
    (tmp_path / "m" / "model_index.json").write_text("{}")
    merges = tmp_path / "m" / "tokenizer" / "merges.txt"
    merges.write_text("a b\n")
    cfg = ModelConfig(path=str(tmp_path / "m"), adapter="")
    first = fingerprint.model_identity(cfg)
    for name, text in (("README.md", "# card"), ("quality.csv", "a,b"), ("strip.PNG", "png")):
        (tmp_path / "m" / name).write_text(text)
    assert fingerprint.model_identity(cfg) == first
    merges.write_text("a b\nc d\n")
    assert fingerprint.model_identity(cfg) != first
