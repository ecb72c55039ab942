"""Beam search picks its candidates with ``best_first`` (a partition instead of a full sort).

It must give exactly the first n columns of a stable argsort of -totals, the order the search
used before and the goldens were checked with: same indices, same order, ties by index, also
with many ties and with -inf (tokens a logits processor forbids). Exact equality: indices.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minis2t2.generation import best_first
from tests import strict_xp

# few distinct values, so that ties are the rule, including at the n-th place
VALUES = [-np.inf, -1e9, -3.5, -2.0, -2.0, -0.25, 0.0, 1.5]


@st.composite
def scores_and_n(draw):
    rows = draw(st.integers(1, 4))
    width = draw(st.integers(2, 60))
    n = draw(st.integers(1, min(width, 12)))
    picks = draw(st.lists(st.sampled_from(VALUES), min_size=rows * width, max_size=rows * width))
    return np.array(picks, dtype=np.float32).reshape(rows, width), n


@settings(max_examples=300, deadline=None)
@given(scores_and_n())
def test_best_first_is_the_head_of_a_stable_sort(case):
    totals, n = case
    expected = np.argsort(-totals, axis=1, kind="stable")[:, :n]
    np.testing.assert_array_equal(best_first(totals, n), expected)
    np.testing.assert_array_equal(best_first(strict_xp.asarray(totals), n).get(), expected)


def test_best_first_on_a_full_vocabulary():
    totals = np.random.default_rng(0).standard_normal((3, 5 * 10224)).astype(np.float32)
    totals[:, ::7] = -np.inf
    totals[1, 100:140] = totals[1].max()  # 40 equal best values: their index order decides
    expected = np.argsort(-totals, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(best_first(totals, 10), expected)
