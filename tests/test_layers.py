"""The package's layers and the absence of import cycles, from every import statement of every module
(at any depth: inside functions and under TYPE_CHECKING too).

Layers, lowest first; a module may import its own layer and those below, never one above:
  core        what no later layer claims: config, errors, atomic, artifacts, video, sampling, ...
  method      `vidtune.method`: the stages' math, pure (tensors in, tensors out; no model, no I/O)
  io, models  poses, pose extraction, inputs, models, segmenters, results, the run folder, torchrun
  plan        `vidtune.plan`: sizes, memory and cost from the config and the math, never a runner
  stages      `vidtune.stages`: the four runners (no runner imports another) and their helpers
  run         `vidtune.pipeline`, `vidtune.api` and the package's lazy facade
  evaluation  `vidtune.evaluation`: metrics of any video; it knows nothing of the synthetic world
  demo        `vidtune.demo`: the synthetic world, its model and the demo command, which reports with
              the evaluation's metrics (so the arrow goes demo -> evaluation, never back)
  benchmark   `vidtune.benchmark`: the ablation over the synthetic world, scored by both
  front ends  `vidtune.cli`, `vidtune.app`
And no two modules import each other, directly or through others (peers included).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vidtune

PACKAGE = Path(vidtune.__file__).parent
LAYERS: tuple[tuple[str, ...], ...] = (
    (),  # core: whatever no later layer claims
    ("vidtune.method",),
    (
        "vidtune.poses",
        "vidtune.pose_extract",
        "vidtune.inputs",
        "vidtune.models",
        "vidtune.segment",
        "vidtune.testing",
        "vidtune.results",
        "vidtune.rundir",
        "vidtune.fingerprint",
        "vidtune.distributed",
    ),
    ("vidtune.plan",),
    ("vidtune.stages",),
    ("vidtune.pipeline", "vidtune.api"),
    ("vidtune.evaluation",),
    ("vidtune.demo",),
    ("vidtune.benchmark",),
    ("vidtune.cli", "vidtune.app"),
)
RUN = 5  # the package root `vidtune` is a lazy facade over the API: it sits with it
LIBRARY = RUN  # layers up to here are the library; the upper ones must never load with it
UPPER = tuple(p for layer in LAYERS[LIBRARY + 1 :] for p in layer)
RUNNERS = ("separate", "fusion", "tuning", "codenoise")  # the four stages' runners


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    if name == "vidtune":
        return RUN
    for i, prefixes in reversed(list(enumerate(LAYERS))):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return 0


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


def module_edges(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that `path` imports. `from p import m` names the module p.m when it is
    one (not the package p, whose __init__ need not import m), else p."""
    out = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in out if m in modules} - {module_name(path)}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_a_layer_above_its_own():
    assert layer_of("vidtune.config") == 0 and layer_of("vidtune.method.fusion") == 1
    assert layer_of("vidtune.pipeline") == RUN and layer_of("vidtune.demo.synthetic.world") == RUN + 2
    bad = {
        name: sorted(n for n in imported(path) if n.startswith("vidtune.") and layer_of(n) > layer_of(name))
        for name, path in MODULES.items()
    }
    assert not {k: v for k, v in bad.items() if v}


def test_no_stage_runner_imports_another_and_plan_imports_none():
    runners = {f"vidtune.stages.{r}" for r in RUNNERS}
    for name in runners:
        assert not (module_edges(MODULES[name], MODULES) & (runners - {name})), name
    plan = {m for n, p in MODULES.items() if n.startswith("vidtune.plan") for m in module_edges(p, MODULES)}
    assert not {n for n in plan if n.startswith("vidtune.stages")}
    assert "vidtune.method.clips" in plan  # the walk sees what plan does import


def test_the_math_imports_only_the_config_and_the_errors():
    math = {m for n, p in MODULES.items() if n.startswith("vidtune.method") for m in module_edges(p, MODULES)}
    outside = {m for m in math if not m.startswith("vidtune.method")}
    assert outside <= {"vidtune.config", "vidtune.errors"}, outside


def test_no_import_cycle_anywhere():
    graph = {name: module_edges(path, MODULES) for name, path in MODULES.items()}
    assert {"vidtune.stages.registry", "vidtune.results"} <= graph["vidtune.pipeline"]  # the walk sees the edges
    assert cycles(graph) == []


def test_the_cycle_finder_finds_peers_and_long_loops():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_walk_sees_imports_inside_functions(tmp_path):
    probe = PACKAGE / "stages" / "common.py"
    assert "vidtune.models" in imported(probe)  # common imports it inside build_scheduler only


@pytest.mark.slow
def test_importing_the_whole_library_loads_no_upper_layer():
    names = [n for n, p in MODULES.items() if layer_of(n) <= LIBRARY and n != "vidtune"]
    code = (
        "import sys, importlib\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        f"bad = sorted(m for m in sys.modules if m.startswith({UPPER!r}))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
