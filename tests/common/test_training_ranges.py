"""The training ranges file: each feature's range and, since drift monitoring, its bins."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from wine_mlops.drift import FeatureBins
from wine_mlops.features import FEATURE_NAMES, load_wine_frame
from wine_mlops.model_files import _MAX_RANGES_BYTES
from wine_mlops.training_ranges import TrainingRanges


@pytest.fixture(scope="module")
def ranges() -> TrainingRanges:
    return TrainingRanges.of(load_wine_frame()[list(FEATURE_NAMES)].head(133))


def test_ranges_of_a_training_split_carry_every_features_bins(ranges: TrainingRanges) -> None:
    head = load_wine_frame().head(133)
    bins = ranges.feature_bins()
    assert bins is not None
    assert len(bins) == 13
    for name, feature_bins in zip(FEATURE_NAMES, bins, strict=True):
        assert feature_bins == FeatureBins.of(head[name].to_numpy())
        assert ranges.features[name].min <= feature_bins.edges[0]
        assert feature_bins.edges[-1] <= ranges.features[name].max


def test_ranges_with_bins_round_trip_through_the_file_and_fit_its_size_limit(
    ranges: TrainingRanges,
) -> None:
    text = ranges.model_dump_json(indent=1)  # as training writes it
    assert TrainingRanges.model_validate_json(text) == ranges
    assert len(text.encode()) < _MAX_RANGES_BYTES / 4
    assert json.loads(text)["features"]["alcohol"]["bins"]["shares"] == list(
        ranges.features["alcohol"].bins.shares  # type: ignore[union-attr]
    )


def old_document(ranges: TrainingRanges) -> dict[str, Any]:
    """The file as training wrote it before bins: min and max only."""
    return {
        "rows": ranges.rows,
        "features": {
            name: {"min": feature.min, "max": feature.max}
            for name, feature in ranges.features.items()
        },
    }


def test_a_file_without_bins_still_loads_and_gives_no_bins(ranges: TrainingRanges) -> None:
    old = TrainingRanges.model_validate_json(json.dumps(old_document(ranges)))
    assert old.bounds() == ranges.bounds()
    assert old.feature_bins() is None
    assert TrainingRanges.model_validate_json(old.model_dump_json()) == old
    nulls = old_document(ranges)
    for feature in nulls["features"].values():
        feature["bins"] = None
    assert TrainingRanges.model_validate_json(json.dumps(nulls)) == old


def test_bins_of_only_some_features_give_no_drift_reference(ranges: TrainingRanges) -> None:
    document = json.loads(ranges.model_dump_json())
    del document["features"]["proline"]["bins"]
    partial = TrainingRanges.model_validate_json(json.dumps(document))
    assert partial.features["alcohol"].bins is not None
    assert partial.feature_bins() is None


def test_bins_outside_the_range_or_malformed_are_refused(ranges: TrainingRanges) -> None:
    document = json.loads(ranges.model_dump_json())
    document["features"]["alcohol"]["max"] = 12.0  # below the upper deciles
    with pytest.raises(ValidationError, match=r"features\.alcohol\n.*bins\.edges must lie within"):
        TrainingRanges.model_validate_json(json.dumps(document))
    document = json.loads(ranges.model_dump_json())
    document["features"]["hue"]["bins"]["shares"][0] += 0.01
    with pytest.raises(ValidationError, match=r"features\.hue\.bins\n.*add up to 1"):
        TrainingRanges.model_validate_json(json.dumps(document))
    document = json.loads(ranges.model_dump_json())
    document["features"]["ash"]["bins"]["mean"] = 2.3
    with pytest.raises(ValidationError, match=r"features\.ash\.bins\.mean\n.*Extra inputs"):
        TrainingRanges.model_validate_json(json.dumps(document))
