"""The method's math, beside the stage that runs it: pure functions and small torch modules, no model
loading, no run folder. The runners in `vidtune.stages` call them.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method`.
"""
