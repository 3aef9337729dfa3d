"""`vidtune ablate`: the baselines and the ablation of the four stages, on the synthetic world.

Modules: `spec` (variants, sequences, suites, the config file), `runner` (running the variants of a
sequence, reuse, `run_ablation`), `scoring` (one sequence's metrics, statistics over sequences),
`report` (tables, ablation.md, report.html, plots, strips, grid videos). The variants, the reuse of
run folders, the suites, the config file and the outputs are described in docs/benchmark.md.
"""

from vidtune.benchmark.runner import run_ablation

__all__ = ["run_ablation"]
