"""The worked numbers of docs/explanation/statistics.md, computed by the functions the report uses:
if a method changes, the page's definitions must change with it."""

from __future__ import annotations

import numpy as np
import pytest
from tests.docs_pages import DOCS

from steerbench.results.health import repetition
from steerbench.results.safe_range import harm_test
from steerbench.results.stats import Z_95, no_change_p, score_interval, wilson

PAGE = (DOCS / "explanation" / "statistics.md").read_text(encoding="utf-8")


def test_each_example_is_still_on_the_page() -> None:
    for quoted in (
        "0/40: [0, 0.088]",
        "3 of 3 one way: p = 0.25",
        "+/- 1.96^2 / (n + 1.96^2)",
        "63\nof 79 characters, 0.80",
        "p = 0.98^40 = 0.45",
        "P(Binomial(40, 0.1) <= 1) = 0.080",
    ):
        assert quoted in PAGE, quoted


def test_wilson_at_zero_of_forty() -> None:
    low, high = wilson(0, 40)
    assert low == 0 and round(high, 3) == 0.088


def test_three_changes_all_one_way() -> None:
    p, _ = no_change_p(np.array([1.0, 1.0, 1.0] + [0.0] * 37))
    assert p == pytest.approx(0.25)


def test_no_changed_sample_still_gives_an_interval() -> None:
    n = 40
    assert score_interval(0, 0, n) == pytest.approx((-(Z_95**2) / (n + Z_95**2), Z_95**2 / (n + Z_95**2)))


def test_repetition_of_a_period_eight_loop() -> None:
    text = " ".join(["a b c d"] * 10)
    assert len(text) == 79 and round(repetition(text) * 79) == 63 and round(repetition(text), 2) == 0.80


def test_small_samples_cannot_show_a_small_margin() -> None:
    assert harm_test(np.zeros(40), 0.02).p_value == pytest.approx(0.98**40)
    assert harm_test(np.array([1.0] + [0.0] * 39), 0.1).p_value == pytest.approx(0.9**40 + 40 * 0.1 * 0.9**39)
