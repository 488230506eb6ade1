"""Issue 23's report part: the example boxes drawn from counts alone (``box_tally.pick``), and the
headless-Chromium load timing of ``bench/scale_parts/page_load.py`` (skipped without chromium)."""

from __future__ import annotations

import doctest
from collections import Counter

import numpy as np
import pytest

from bench.scale_parts.page_load import browser, load
from common.manifests import boxes
from shards.checks import box_tally
from shards.checks.box_tally import pick


def test_doctest_of_pick():
    assert doctest.testmod(box_tally).failed == 0


def test_picks_are_distinct_boxes_that_exist_and_repeat_with_the_seed():
    counts = np.random.default_rng(1).integers(0, 6, size=(40, len(boxes.STATUSES)))
    counts[:, 3] = 0  # a status no file has
    picks = pick(counts, 8, seed=5)
    assert len(set(picks)) == len(picks)
    for status, f, n in picks:
        assert 0 <= n < counts[f, boxes.STATUSES.index(status)]
    per_status = Counter(s for s, _, _ in picks)
    assert per_status == {s: min(8, int(counts[:, j].sum())) for j, s in enumerate(boxes.STATUSES) if j != 3}
    assert pick(counts, 8, seed=5) == picks and pick(counts, 8, seed=6) != picks
    assert pick(counts, 10**6, seed=0) == [
        (s, f, n) for j, s in enumerate(boxes.STATUSES) for f in range(40) for n in range(counts[f, j])
    ]  # more than there are: every box, in order


def test_every_box_is_as_likely_whatever_its_file_holds():
    """One box in file 0, 99 in file 1: file 0's box is picked about once in 100 seeds (uniform over
    boxes, not over files, where it would be one in two)."""
    counts = np.array([[1], [99]])
    hits = sum(pick(counts, 1, seed)[0][1] == 0 for seed in range(3000))
    assert 10 < hits < 60  # expected 30; binomial sd 5.4


@pytest.mark.skipif(browser() is None, reason="chromium is not installed (apt-get install chromium)")
def test_a_page_loads_and_its_nodes_are_counted(tmp_path):
    sizes = {}
    for rows in (10, 2000):
        page = tmp_path / f"p{rows}.html"
        body = "".join(f"<tr><td>{i}</td><td>x</td></tr>" for i in range(rows))
        page.write_text(f"<!DOCTYPE html><html><body><table>{body}</table></body></html>")
        got = load(page, browser(), timeout_s=60)
        assert got["bytes"] == page.stat().st_size
        assert 0 < got["dom_content_loaded_ms"] <= got["load_event_end_ms"] < 60_000
        sizes[rows] = got["nodes"]
    assert sizes[2000] - sizes[10] >= 3 * (2000 - 10)  # a tr and two td per row, at least
