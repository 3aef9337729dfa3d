"""Evaluation: weight-free video metrics (`metrics`), `vidtune evaluate` (`evaluate`), the ablation
and benchmark (`ablation`: spec, runner, scoring, report) and the HTML/plot reports (`report`).
Uses the library; the library never imports it."""
