"""The four stages. Each `run(...)` reads and writes the artifacts of its folder in the run dir."""
