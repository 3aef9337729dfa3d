"""The package's layers: the library (everything at the top of `vidtune`, and `vidtune.stages`) never
imports the evaluation or the demo world, not even inside a function; the front ends (`cli`, `app`)
may use everything. Walks every import statement of every module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import vidtune

PACKAGE = Path(vidtune.__file__).parent
UPPER = ("vidtune.evaluation", "vidtune.demo", "vidtune.app", "vidtune.cli")
FRONT_ENDS = ("vidtune.cli", "vidtune.app", "vidtune.evaluation", "vidtune.demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module an import statement of `path` names (absolute and relative, at any depth)."""
    names = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not module_name(p).startswith(FRONT_ENDS)]


def test_the_library_never_imports_evaluation_demo_or_front_ends():
    modules = library_modules()
    assert {"vidtune.api", "vidtune.pipeline", "vidtune.stages.codenoise", "vidtune.models"} <= {
        module_name(p) for p in modules
    }
    bad = {module_name(p): sorted(n for n in imported(p) if n.startswith(UPPER)) for p in modules}
    assert not {k: v for k, v in bad.items() if v}


def test_the_walk_sees_imports_inside_functions(tmp_path):
    probe = PACKAGE / "stages" / "common.py"
    assert "vidtune.models" in imported(probe)  # common imports it inside build_scheduler only


def test_importing_the_whole_library_loads_no_upper_layer():
    names = [module_name(p) for p in library_modules() if p.name != "__init__.py" or p.parent != PACKAGE]
    code = (
        "import sys, importlib\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({UPPER!r}))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
