"""Tests of vidtune.benchmark: the ablation spec, runner, scoring and report."""
