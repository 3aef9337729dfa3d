"""Tests of vidtune.demo: the synthetic world, the demo model and its training, `vidtune demo`."""
