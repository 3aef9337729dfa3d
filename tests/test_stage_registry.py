"""The stage registry: every stage's config view is its resume hash, and the hashes of old run folders hold."""

import dataclasses

import pytest

from vidtune import config as C

# config.stage_hash of stages 1-4 as computed before the registry (commit 90194d6): run folders made
# then must still resume, so these strings must never change.
HASHES_BEFORE = {
    (): ("57dad753d382c249", "07d3346dc667989d", "350fd5177bacfa6f", "eb9cf74df790d577"),
    ("inputs.height=64", "inputs.width=64", "sampling.steps=20"): (
        "f16fb5d02b036dc8",
        "8e626cce6ff356d3",
        "0eff4d10cbea488a",
        "ca937a9afba94f67",
    ),
    ("codenoise.init=noise", "codenoise.clip_length=8"): (
        "57dad753d382c249",
        "07d3346dc667989d",
        "350fd5177bacfa6f",
        "933b8f84950e0618",
    ),
    ("tuning.trainable=lora", "tuning.lr=1e-4"): (
        "57dad753d382c249",
        "07d3346dc667989d",
        "f51ceace00cf6757",
        "fc502e9c17dfd251",
    ),
    ("fusion.w_b=0.5",): ("57dad753d382c249", "683e2465504b993e", "131032a362f6feb3", "951775f9dca94cd2"),
    ("runtime.compile=true", "output.quality=5"): (
        "57dad753d382c249",
        "07d3346dc667989d",
        "350fd5177bacfa6f",
        "eb9cf74df790d577",
    ),
}


@pytest.mark.parametrize("overrides", list(HASHES_BEFORE), ids=lambda o: ",".join(o) or "defaults")
def test_stage_hashes_are_those_of_old_run_folders(overrides):
    """Folders made before `separate.stop` existed computed what "end" computes: at "end" their hashes hold."""
    cfg = C.apply_overrides(C.RunConfig(), ["separate.stop=end", *overrides])
    assert tuple(C.stage_hash(cfg, k) for k in (1, 2, 3, 4)) == HASHES_BEFORE[overrides]


def test_every_stage_view_is_its_hash_sections():
    """A stage reads exactly the sections its hash covers: changing a field outside them keeps the hash,
    changing one inside changes it, and the view of stage k extends stage k-1's by one section."""
    base = C.RunConfig()
    previous: set[str] = set()
    for k in (1, 2, 3, 4):
        view = C.stage_config(base, k)
        sections = {f.name for f in dataclasses.fields(view)}
        assert sections == set(C.stage_sections(k))
        assert previous < sections and (k == 1 or len(sections - previous) == 1)
        previous = sections
        for name in C.SECTIONS:
            section = getattr(base, name)
            first = dataclasses.fields(section)[0]
            value = getattr(section, first.name)
            changed = {bool: (lambda v: not v), int: (lambda v: v + 1), float: (lambda v: v + 0.5)}.get(
                type(value), lambda v: f"{v}x"
            )(value)
            other = dataclasses.replace(base, **{name: dataclasses.replace(section, **{first.name: changed})})
            assert (C.stage_hash(other, k) != C.stage_hash(base, k)) == (name in sections), (k, name)


def test_the_registry_holds_every_stage_with_its_view():
    from vidtune.stages.registry import STAGES

    assert list(STAGES) == [1, 2, 3, 4]
    for k, stage in STAGES.items():
        assert stage.number == k and stage.view is C.stage_view(k)
        assert set(C.stage_sections(k)) == {f.name for f in dataclasses.fields(stage.view)}
        assert all(p < k for p in stage.requires(C.stage_config(C.RunConfig(), k)) + stage.uses)


def test_stage_4_requires_stage_2_exactly_when_its_config_reads_it():
    from vidtune.stages.codenoise import needs_fusion
    from vidtune.stages.registry import STAGES

    for overrides in ([], ["codenoise.init=noise", "codenoise.background=free", "codenoise.fg_gain=0"]):
        view = C.stage_config(C.apply_overrides(C.RunConfig(), overrides), 4)
        assert STAGES[4].requires(view) == ((2,) if needs_fusion(view.codenoise) else ())
    assert STAGES[4].requires(C.stage_config(C.RunConfig(), 4)) == (2,)  # the defaults start from stage 2


def test_a_field_added_later_keeps_old_hashes_at_its_legacy_value_and_changes_them_elsewhere():
    """`separate.stop` came after run folders were made: at "end" (what they computed) the hashes are the
    old ones (above); at its default "fusion" every stage's hash changes (stage 1's result differs, and
    every later stage reads it), so an old folder's stages rerun rather than mix two computations."""
    early = C.RunConfig()
    assert early.separate.stop == "fusion"
    legacy = C.apply_overrides(early, ["separate.stop=end"])
    assert all(C.stage_hash(early, k) != C.stage_hash(legacy, k) for k in (1, 2, 3, 4))
    assert C.stage_hash(legacy, 1) == HASHES_BEFORE[()][0]
