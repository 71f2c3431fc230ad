"""Drift maths: training bins of a feature and the population stability index (PSI)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from wine_mlops.drift import (
    PSI_MAJOR,
    PSI_MODERATE,
    SHARE_FLOOR,
    DriftReference,
    FeatureBins,
    bin_shares,
    psi,
    window_psi,
)
from wine_mlops.features import FEATURE_NAMES, load_wine_frame

#: Bins of a feature spread evenly over 0 to 10: edges 1, 2, …, 9, a tenth of rows in each.
EVEN = FeatureBins(edges=tuple(float(i) for i in range(1, 10)), shares=(0.1,) * 10)


def test_bins_of_a_column_are_its_deciles_and_each_bin_holds_a_tenth() -> None:
    bins = FeatureBins.of(np.arange(1000, dtype=float))
    assert bins.edges == pytest.approx([99.9 * i for i in range(1, 10)])
    assert bins.shares == pytest.approx([0.1] * 10)
    assert math.fsum(bins.shares) == pytest.approx(1.0, abs=1e-12)


def test_a_window_spread_like_training_has_no_drift() -> None:
    rng = np.random.default_rng(7)
    bins = FeatureBins.of(rng.normal(13.0, 0.8, 5000))
    # the training column itself: exactly the training shares
    assert psi(rng.normal(13.0, 0.8, 5000), bins) < 0.01
    # 500 new rows of the same distribution: only sampling noise, well inside "stable"
    assert psi(rng.normal(13.0, 0.8, 500), bins) < PSI_MODERATE


def test_the_training_column_against_its_own_bins_is_zero() -> None:
    column = load_wine_frame()["proline"].to_numpy()
    assert psi(column, FeatureBins.of(column)) == 0.0


def test_a_shifted_feature_is_a_major_shift() -> None:
    rng = np.random.default_rng(11)
    bins = FeatureBins.of(rng.normal(13.0, 0.8, 5000))
    assert psi(rng.normal(13.0 + 0.8, 0.8, 500), bins) > PSI_MAJOR  # one standard deviation
    assert PSI_MODERATE < psi(rng.normal(13.0 + 0.4, 0.8, 5000), bins) < 0.4  # half of one
    wider = psi(rng.normal(13.0, 1.6, 5000), bins)  # same centre, twice the spread
    assert wider > PSI_MAJOR


def test_psi_by_hand() -> None:
    # a fifth of the window in bin 0, none in bin 1 (floored at 1e-4), a tenth in the others
    window = [0.5] * 20 + [v + 0.5 for v in range(2, 10) for _ in range(10)]
    assert len(window) == 100
    assert bin_shares(window, EVEN).tolist() == pytest.approx([0.2, 0.0] + [0.1] * 8)
    expected = (0.2 - 0.1) * math.log(2) + (SHARE_FLOOR - 0.1) * math.log(SHARE_FLOOR / 0.1)
    assert expected == pytest.approx(0.7594, abs=1e-4)
    assert psi(window, EVEN) == pytest.approx(expected, rel=1e-12)


def test_a_value_on_an_edge_falls_in_the_bin_above_it() -> None:
    assert bin_shares([1.0], EVEN).tolist() == [0, 1] + [0] * 8
    assert bin_shares([0.999], EVEN).tolist() == [1] + [0] * 9
    assert bin_shares([9.0, 1e9], EVEN).tolist() == [0] * 9 + [1]
    assert bin_shares([-1e9], EVEN).tolist() == [1] + [0] * 9


def test_a_feature_with_few_values_has_well_defined_bins() -> None:
    # 70 wines at 2 and 30 at 3: most deciles are 2, the rest 3 (repeated edges)
    column = np.array([2.0] * 70 + [3.0] * 30)
    bins = FeatureBins.of(column)
    assert list(bins.edges) == sorted(bins.edges)
    assert len(set(bins.edges)) < len(bins.edges)
    # every row at a repeated value lands in the one bin above it; the bins between equal
    # edges are empty, in training as in any window
    assert sorted(s for s in bins.shares if s) == pytest.approx([0.3, 0.7])
    assert math.fsum(bins.shares) == pytest.approx(1.0)
    assert psi(column, bins) == 0.0
    assert psi(np.array([2.0] * 35 + [3.0] * 15), bins) == pytest.approx(0.0, abs=1e-12)
    # a window where the rare value became the common one is a major shift, by hand
    flipped = np.array([2.0] * 30 + [3.0] * 70)
    expected = (0.3 - 0.7) * math.log(0.3 / 0.7) + (0.7 - 0.3) * math.log(0.7 / 0.3)
    assert psi(flipped, bins) == pytest.approx(expected)
    assert psi(flipped, bins) > PSI_MAJOR


def test_a_constant_feature_has_one_bin_and_any_other_value_is_drift() -> None:
    bins = FeatureBins.of(np.full(50, 2.5))
    assert bins.edges == (2.5,) * 9
    assert bins.shares == (0.0,) * 9 + (1.0,)
    assert psi(np.full(10, 2.5), bins) == 0.0
    assert psi(np.full(10, 2.4), bins) > PSI_MAJOR


def test_the_vectorised_form_gives_each_feature_its_own_psi() -> None:
    frame = load_wine_frame()[list(FEATURE_NAMES)]
    train = frame.sample(frac=0.75, random_state=3)
    bins = [FeatureBins.of(train[name].to_numpy()) for name in FEATURE_NAMES]
    window = frame.to_numpy().copy()
    window[:, FEATURE_NAMES.index("alcohol")] += 1.0  # alcohol one point stronger
    found = window_psi(window, bins)
    assert found.shape == (13,)
    one_by_one = [psi(window[:, i], bins[i]) for i in range(13)]
    assert found.tolist() == pytest.approx(one_by_one, rel=1e-12)
    assert found[FEATURE_NAMES.index("alcohol")] > PSI_MAJOR
    others = np.delete(found, FEATURE_NAMES.index("alcohol"))
    assert others.max() < PSI_MODERATE  # the data set against three quarters of itself


def test_a_window_must_have_rows_of_every_binned_feature() -> None:
    reference = DriftReference.of([EVEN, EVEN])
    with pytest.raises(ValueError, match="at least one row"):
        reference.psi(np.empty((0, 2)))
    with pytest.raises(ValueError, match="rows of 2 values"):
        reference.psi(np.ones((5, 3)))
    with pytest.raises(ValueError, match="at least one value"):
        psi([], EVEN)
    with pytest.raises(ValueError, match="only finite"):
        FeatureBins.of([1.0, float("nan")])


def test_bins_round_trip_through_json() -> None:
    bins = FeatureBins.of(load_wine_frame()["hue"].to_numpy())
    assert FeatureBins.model_validate_json(bins.model_dump_json()) == bins


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ({"edges": [1.0] * 8, "shares": [0.1] * 10}, "at least 9 items"),
        ({"edges": [1.0] * 9, "shares": [0.1] * 11}, "at most 10 items"),
        ({"edges": [2.0, 1.0] + [3.0] * 7, "shares": [0.1] * 10}, "ascending order"),
        ({"edges": [1.0] * 9, "shares": [0.2] * 10}, "add up to 1, not 2"),
        ({"edges": [1.0] * 9, "shares": [1.1] + [-0.1] + [0.0] * 8}, "from 0 to 1"),
        ({"edges": [1.0] * 9, "shares": [0.1] * 10, "counts": [1]}, "Extra inputs"),
        ({"edges": ["1.0"] * 9, "shares": [0.1] * 10}, "valid number"),
    ],
)
def test_malformed_bins_are_refused(document: dict[str, object], said: str) -> None:
    import json

    with pytest.raises(ValidationError, match=said):
        FeatureBins.model_validate_json(json.dumps(document))


def test_non_finite_edges_are_refused() -> None:
    text = '{"edges": [1, 2, 3, 4, 5, 6, 7, 8, Infinity], "shares": [' + ", ".join(["0.1"] * 10)
    with pytest.raises(ValidationError, match="finite"):
        FeatureBins.model_validate_json(text + "]}")
