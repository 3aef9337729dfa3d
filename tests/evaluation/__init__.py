"""Tests of vidtune.evaluation: metrics, evaluate, report."""
