"""Every registered statistic has the invariances it declares (hypothesis property tests)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.registry import STATISTICS, StatisticSpec, statistic_names

CATEGORIES = [1, 2, 3]
AS_TEXT = {1: "low", 2: "mid", 3: "high"}
EXTRA = 4


def tables(spec: StatisticSpec):
    """Subjects x raters tables of values in CATEGORIES (None where missing is allowed)."""
    raters = st.just(spec.n_raters) if spec.n_raters else st.integers(2, 4)
    values = st.sampled_from([*CATEGORIES, None] if spec.allows_missing else CATEGORIES)
    return st.tuples(st.integers(2, 12), raters).flatmap(
        lambda shape: st.tuples(
            st.lists(
                st.lists(values, min_size=shape[1], max_size=shape[1]),
                min_size=shape[0],
                max_size=shape[0],
            ),
            st.permutations(range(shape[0])),
            st.permutations(range(shape[1])),
        )
    )


def value(spec: StatisticSpec, ratings, categories) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spec.compute(np.array(ratings, dtype=object), categories)


def assert_same(first: float, second: float) -> None:
    assert (np.isnan(first) and np.isnan(second)) or first == pytest.approx(second, abs=1e-10)


def test_registry_names_unique():
    assert len(set(statistic_names())) == len(STATISTICS)


def by_property(name: str) -> list[StatisticSpec]:
    specs = [spec for spec in STATISTICS if getattr(spec, name)]
    return specs


def ids(specs: list[StatisticSpec]) -> list[str]:
    return [spec.name for spec in specs]


SYMMETRIC = by_property("symmetric_in_raters")
CASE_ORDER = by_property("invariant_to_case_order")
LABEL_TYPE = by_property("invariant_to_label_type")
UNUSED = by_property("invariant_to_unused_category")
NOT_UNUSED = [spec for spec in STATISTICS if not spec.invariant_to_unused_category]


@pytest.mark.parametrize("spec", SYMMETRIC, ids=ids(SYMMETRIC))
def test_symmetric_in_raters(spec):
    @settings(max_examples=25, deadline=None)
    @given(tables(spec))
    def check(data):
        ratings, _, rater_order = data
        swapped = [[row[j] for j in rater_order] for row in ratings]
        assert_same(value(spec, ratings, CATEGORIES), value(spec, swapped, CATEGORIES))

    check()


@pytest.mark.parametrize("spec", CASE_ORDER, ids=ids(CASE_ORDER))
def test_invariant_to_case_order(spec):
    @settings(max_examples=25, deadline=None)
    @given(tables(spec))
    def check(data):
        ratings, case_order, _ = data
        shuffled = [ratings[i] for i in case_order]
        assert_same(value(spec, ratings, CATEGORIES), value(spec, shuffled, CATEGORIES))

    check()


@pytest.mark.parametrize("spec", LABEL_TYPE, ids=ids(LABEL_TYPE))
def test_invariant_to_label_type(spec):
    @settings(max_examples=25, deadline=None)
    @given(tables(spec), st.sampled_from(["float", "numpy"]))
    def check(data, numeric_type):
        ratings, _, _ = data
        if spec.label_kind == "nominal":
            relabel = AS_TEXT.get
            categories = [AS_TEXT[c] for c in CATEGORIES]
        else:
            convert = float if numeric_type == "float" else np.int64
            relabel = lambda x: None if x is None else convert(x)  # noqa: E731
            categories = [convert(c) for c in CATEGORIES]
        retyped = [[relabel(x) for x in row] for row in ratings]
        assert_same(value(spec, ratings, CATEGORIES), value(spec, retyped, categories))

    check()


@pytest.mark.parametrize("spec", UNUSED, ids=ids(UNUSED))
def test_unused_category_changes_nothing(spec):
    @settings(max_examples=25, deadline=None)
    @given(tables(spec))
    def check(data):
        ratings, _, _ = data
        assert_same(value(spec, ratings, CATEGORIES), value(spec, ratings, [*CATEGORIES, EXTRA]))

    check()


@pytest.mark.parametrize("spec", NOT_UNUSED, ids=ids(NOT_UNUSED))
def test_unused_category_changes_documented_statistics(spec):
    # Documented: the chance agreement of PABAK, AC1 and AC2 depends on the number of categories.
    ratings = [[1, 1], [2, 2], [1, 2], [3, 3], [2, 2], [1, 3]]
    assert value(spec, ratings, CATEGORIES) != pytest.approx(
        value(spec, ratings, [*CATEGORIES, EXTRA]), abs=1e-6
    )
