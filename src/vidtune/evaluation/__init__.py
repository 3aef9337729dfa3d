"""Evaluation: weight-free video metrics (`metrics`), `vidtune evaluate` (`evaluate`), the ablation
and benchmark (`ablate`) and the HTML/plot reports (`report`). Uses the library; the library never
imports it."""
