"""Property tests: kappa symmetric in raters, invariant to case order and relabelling."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.agreement import (
    UndefinedStatisticWarning,
    cohen_kappa,
    fleiss_kappa,
)
from analysis.bootstrap import cluster_bootstrap

CATEGORIES = ["absent", "nonrim", "rim"]
RENAMED = {"absent": "A", "nonrim": "B", "rim": "C"}

paired = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(CATEGORIES), min_size=n, max_size=n),
        st.lists(st.sampled_from(CATEGORIES), min_size=n, max_size=n),
        st.permutations(range(n)),
    )
)
weightings = st.sampled_from([None, "linear", "quadratic"])


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedStatisticWarning)
        return function(*args, **kwargs)


def assert_same(first, second) -> None:
    for name in ("estimate", "se", "se0"):
        a, b = getattr(first, name), getattr(second, name)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-12), name


@settings(max_examples=100, deadline=None)
@given(paired, weightings)
def test_cohen_symmetric_in_raters(data, weights):
    a, b, _ = data
    assert_same(
        quiet(cohen_kappa, a, b, categories=CATEGORIES, weights=weights),
        quiet(cohen_kappa, b, a, categories=CATEGORIES, weights=weights),
    )


@settings(max_examples=100, deadline=None)
@given(paired, weightings)
def test_cohen_invariant_to_case_order(data, weights):
    a, b, order = data
    shuffled_a = [a[i] for i in order]
    shuffled_b = [b[i] for i in order]
    assert_same(
        quiet(cohen_kappa, a, b, categories=CATEGORIES, weights=weights),
        quiet(cohen_kappa, shuffled_a, shuffled_b, categories=CATEGORIES, weights=weights),
    )


@settings(max_examples=100, deadline=None)
@given(paired, weightings)
def test_cohen_invariant_to_relabelling(data, weights):
    a, b, _ = data
    renamed = [RENAMED[c] for c in CATEGORIES]
    assert_same(
        quiet(cohen_kappa, a, b, categories=CATEGORIES, weights=weights),
        quiet(
            cohen_kappa,
            [RENAMED[x] for x in a],
            [RENAMED[x] for x in b],
            categories=renamed,
            weights=weights,
        ),
    )


@settings(max_examples=100, deadline=None)
@given(paired, st.permutations(CATEGORIES))
def test_unweighted_invariant_to_category_order(data, reordered):
    a, b, _ = data
    assert_same(
        quiet(cohen_kappa, a, b, categories=CATEGORIES),
        quiet(cohen_kappa, a, b, categories=list(reordered)),
    )


ratings_tables = st.tuples(st.integers(2, 15), st.integers(2, 5)).flatmap(
    lambda shape: st.tuples(
        st.lists(
            st.lists(st.sampled_from([*CATEGORIES, None]), min_size=shape[1], max_size=shape[1]),
            min_size=shape[0],
            max_size=shape[0],
        ),
        st.permutations(range(shape[0])),
        st.permutations(range(shape[1])),
    )
)


@settings(max_examples=100, deadline=None)
@given(ratings_tables)
def test_fleiss_invariant_to_subject_and_rater_order(data):
    table, subject_order, rater_order = data
    shuffled = [[table[i][j] for j in rater_order] for i in subject_order]
    first = quiet(fleiss_kappa, table, categories=CATEGORIES)
    second = quiet(fleiss_kappa, shuffled, categories=CATEGORIES)
    assert_same(first, second)


@settings(max_examples=100, deadline=None)
@given(ratings_tables)
def test_fleiss_invariant_to_relabelling(data):
    table, _, _ = data
    renamed = [[RENAMED.get(x) for x in row] for row in table]
    first = quiet(fleiss_kappa, table, categories=CATEGORIES)
    second = quiet(fleiss_kappa, renamed, categories=list(RENAMED.values()))
    assert_same(first, second)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-100, 100), min_size=3, max_size=20),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["percentile", "bca"]),
)
def test_bootstrap_reproducible_from_seed(values, seed, method):
    x = np.array(values)
    clusters = np.arange(len(x)) // 2

    def mean(weights: np.ndarray) -> np.ndarray:
        return (weights @ x) / weights.sum(axis=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = cluster_bootstrap(mean, clusters, n_resamples=50, seed=seed, method=method)
        second = cluster_bootstrap(mean, clusters, n_resamples=50, seed=seed, method=method)
    assert first.n_resamples == second.n_resamples
    for name in ("estimate", "se", "ci_low", "ci_high"):
        a, b = getattr(first, name), getattr(second, name)
        assert (np.isnan(a) and np.isnan(b)) or a == b, name
