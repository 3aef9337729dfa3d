"""The four stages: each `run(...)` is a function of its config view, the components, the shared conditioning
and the previous stage's typed result (`vidtune.results`), and touches no run folder (`vidtune.pipeline` does)."""
