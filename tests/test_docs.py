"""The source's docstrings point only at documents the repository holds (docs/*.md), never at the
design notes that live outside it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_document_the_source_names_is_in_the_repository():
    named = set()
    for path in sorted((ROOT / "src" / "vidtune").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"[Dd]esign §", text), f"{path}: points at the design notes, which are not in the repo"
        named |= {(path, m) for m in re.findall(r"\bdocs/[\w-]+\.md\b", text)}
    assert named  # the walk finds the references it checks
    missing = sorted((str(p.relative_to(ROOT)), doc) for p, doc in named if not (ROOT / doc).is_file())
    assert not missing


def _download_lines() -> list[tuple[str, str]]:
    """(document, command) of every `hf download` the README and docs/ give (continuations joined)."""
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")
        out += [(doc.name, " ".join(m.split())) for m in re.findall(r"^\s*(hf download [^\n]+)", text, re.M)]
    return out


def test_the_documented_download_command_exists_and_fetches_what_vidtune_loads():
    """The download command the docs give is installed with vidtune (huggingface_hub's `hf`, next to
    this Python), and each one is `models.download_command`'s: the same include / exclude patterns
    as the error messages give, fetching the safetensors and configs only."""
    import sys

    from vidtune.models import download_command

    lines = _download_lines()
    assert len(lines) >= 3  # SD, the adapter (README) and SAM (docs/usage.md)
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "hf").is_file() or (bin_dir / "hf.exe").is_file(), f"no `hf` in {bin_dir}"
    for doc, line in lines:
        repo, local_dir = line.split()[2], line.split("--local-dir ")[1].split()[0]
        assert line == download_command(repo, local_dir), (doc, line)
    assert "huggingface-cli" not in "".join((ROOT / f).read_text() for f in ("README.md", "docs/usage.md"))


def test_every_committed_picture_is_readable_at_page_width():
    """A picture wider than 2,000 px shrinks to unreadable text on a page (the old flicker curves were 7,800)."""
    from PIL import Image

    pictures = sorted([*(ROOT / "docs").glob("*.png"), *(ROOT / "bench" / "results").glob("*.png")])
    assert pictures
    for path in pictures:
        with Image.open(path) as image:
            width, height = image.size
        assert width <= 2000 and height <= 2400, f"{path.relative_to(ROOT)} is {width}x{height}"
