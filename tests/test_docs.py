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
