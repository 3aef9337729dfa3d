"""The README's Python example runs as written, on the embedded demo model, in a fresh folder that holds
what the README's set-up command (`vidtune demo`) leaves there: runs/demo/source/poses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Python\n") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from vidtune.demo.command import DEFAULT_PROMPT, write_source

    write_source(tmp_path / "runs" / "demo", "walk", 24, DEFAULT_PROMPT, 0)  # as `vidtune demo` does
    monkeypatch.chdir(tmp_path)
    example = python_blocks()[0]
    example = example.replace("sampling.steps=10", "sampling.steps=4")  # the same calls, fewer steps on the CPU
    scope: dict = {}
    exec(compile(example, "README.md (Python)", "exec"), scope)
    out, final = scope["out"], scope["final"]
    assert out.frames.shape == (24, 64, 64, 3)
    assert out.stages[1].frames.shape == (24, 64, 64, 3)
    assert final.frames.shape == (24, 64, 64, 3) and final.info["unet"] == "tuned"


def test_the_real_model_example_names_the_api_of_the_issue():
    real = python_blocks()[1]
    assert 'VidtunePipeline.from_pretrained("CompVis/stable-diffusion-v1-4"' in real
    assert "torch_dtype=torch.float16" in real and "run_dir=" in real
