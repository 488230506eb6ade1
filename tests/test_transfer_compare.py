"""bench/transfer_table.compare: two transfer reports paired seed by seed (the blurred-vs-unblurred
table of the README), checked against differences worked out by hand."""

from __future__ import annotations

import pytest

from bench.transfer_table import compare, format_compare


def report(values: dict[tuple[str, int], tuple[float, float]]) -> dict:
    runs = [
        {"init": "lup", "dataset": d, "seed": s, "frozen": {"mAP": f}, "finetuned": {"mAP": t}}
        for (d, s), (f, t) in values.items()
    ]
    return {"runs": runs + [{"init": "random", "dataset": "viper", "seed": 0, "frozen": {"mAP": 99.0}, "finetuned": {"mAP": 99.0}}]}  # fmt: skip


def test_differences_are_paired_by_seed_and_unmatched_seeds_left_out():
    base = report({("viper", 0): (5.0, 19.0), ("viper", 1): (6.0, 15.0), ("viper", 2): (4.0, 18.0), ("grid", 0): (5.0, 12.0)})  # fmt: skip
    other = report({("viper", 0): (5.0, 20.0), ("viper", 1): (5.0, 16.0), ("viper", 2): (4.0, 16.0)})
    [viper] = compare(base, other)  # grid has no blurred run: no row
    assert viper["seeds"] == [0, 1, 2]
    assert viper["finetuned"]["base"][0] == pytest.approx(52 / 3)
    # differences +1, +1, -2: mean 0, sample std sqrt(((1)^2 + (1)^2 + (-2)^2) / 2) = sqrt(3)
    assert viper["finetuned"]["difference"] == pytest.approx((0.0, 3**0.5))
    assert viper["frozen"]["difference"] == pytest.approx(
        (-1 / 3, ((1 / 3) ** 2 * 2 + (2 / 3) ** 2) ** 0.5 / 2**0.5)
    )
    text = format_compare([viper], ("unblurred", "blurred"))
    assert (
        "| viper | 0,1,2 | 5.0 ± 1.0 | 4.7 ± 0.6 | -0.3 ± 0.6 | 17.3 ± 2.1 | 17.3 ± 2.3 | +0.0 ± 1.7 |"
        in text
    )
