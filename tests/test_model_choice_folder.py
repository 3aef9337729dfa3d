"""A model folder named in a config file brings its own adapter."""

from pathlib import Path

from vidtune.cli import build_config, make_parser


def test_model_path_in_a_toml_picks_up_its_adapter_folder(tiny_model_dir, tmp_path):
    assert (Path(tiny_model_dir) / "adapter").is_dir()
    toml = tmp_path / "run.toml"
    toml.write_text(f'[model]\npath = "{tiny_model_dir}"\n')
    cfg = build_config(make_parser().parse_args(["run", str(toml)]))
    assert cfg.model.adapter == ""
    toml.write_text(f'[model]\npath = "{tiny_model_dir}"\nadapter = "some/adapter"\n')
    assert build_config(make_parser().parse_args(["run", str(toml)])).model.adapter == "some/adapter"
