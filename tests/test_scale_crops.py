"""bench/scale_parts/crops.py: the input trees it measures on, and its skip rule.

The smoke run of every stage is ``tests/test_scale_bench.py``'s; here, what the measurements rest
on: a tree of N distinct files that are the sample crops' own bytes (hard links), grown size by
size into the very tree one step would make, that ``--from-images`` lists as N images in which the
tracklet pattern finds TownCentre's people, copy by copy.
"""

from __future__ import annotations

import os
import re

from bench.scale_parts import crops
from shards.sources.images import list_images


def test_the_input_tree_links_distinct_names_to_the_sample_crops(shared_data, tmp_path):
    sample = crops.sample_crops(shared_data)
    n = len(sample) + 500  # one whole copy and part of the next
    grown, at_once = tmp_path / "grown", tmp_path / "at_once"
    for have, want in ((0, 40), (40, 40), (40, n)):  # sizes in order, as run() grows it
        crops.grow_inputs(grown, sample, have, want)
    crops.grow_inputs(at_once, sample, 0, n)
    listed = list_images(grown).images
    assert listed == list_images(at_once).images and len(listed) == len(set(listed)) == n
    assert {p.split("/")[1] for p in listed if p.startswith("c0001/")} == {
        "CUHK",
        "INRIA",
        "MIT",
        "TownCentre",
    }
    first = sample[0]
    linked = grown / "c0001" / first.parent.name / first.name
    assert os.stat(linked).st_ino == os.stat(first).st_ino  # the crop itself: no disk, real bytes
    pattern = re.compile(crops.TRACKLETS)
    people = {m.group("tracklet") for p in listed if (m := pattern.fullmatch(p))}
    town = [p for p in listed if "/TownCentre/" in p]
    assert all(pattern.fullmatch(p) for p in town) and {t.split("/")[0] for t in people} == {"c0000", "c0001"}


def test_a_stage_that_does_not_fit_is_a_skipped_row(tmp_path):
    assert crops.room(tmp_path, 1) == ""
    why = crops.room(tmp_path, 1 << 60)
    assert why.startswith("skipped: needs") and "GB free" in why
    row = crops.skipped("export-lmdb", 4_180_243, why)
    assert row.rc == crops.SKIPPED and row.note == why and row.seconds == 0
