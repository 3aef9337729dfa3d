"""Tests of vidtune.evaluation: metrics, evaluate, report, the ablation."""
