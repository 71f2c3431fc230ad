"""The range and distribution of every feature in a model's training split, logged with
the model itself.

Training writes it as ``training_ranges.json`` among the model's own files (the sklearn
flavour's ``extra_files``), so whoever downloads a version gets the ranges of exactly the
data that version was fitted on; the prediction API warns about inputs outside them, and
measures the drift of its recent inputs against each feature's ``bins`` (decile edges and
the share of training rows in each bin, :class:`~wine_mlops.drift.FeatureBins`). The file is
data from a model directory, so it is read strictly: the 13 wine features, each with a
finite ``min`` not above its ``max`` and, optionally, well-formed bins inside that range, and
nothing else. Files written before training logged bins have none (``bins`` missing or
null): they still load, and such a version gets no drift figure.

Example::

    {"rows": 133, "features": {"alcohol": {"min": 11.03, "max": 14.83,
        "bins": {"edges": [12.08, 12.37, ...], "shares": [0.098, 0.105, ...]}}, ...}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wine_mlops.drift import FeatureBins
from wine_mlops.features import FEATURE_NAMES

if TYPE_CHECKING:
    import pandas as pd

#: The file's name inside the model directory's ``extra_files`` folder.
TRAINING_RANGES_FILE: Final = "training_ranges.json"


class FeatureRange(BaseModel):
    """One feature's smallest and largest value in the training split, and its bins.

    Attributes:
        min: The smallest value.
        max: The largest value.
        bins: Its decile bins and their shares of the training rows, or None (a file
            written before training logged them).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)
    bins: FeatureBins | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.bins is not None and not (
            self.min <= self.bins.edges[0] and self.bins.edges[-1] <= self.max
        ):
            raise ValueError(f"bins.edges must lie within min {self.min:g} and max {self.max:g}")
        return self


class TrainingRanges(BaseModel):
    """Per-feature ranges of a model's training split (the content of the ranges file).

    Attributes:
        rows: How many training rows the ranges come from.
        features: Each of the 13 wine features, in model order, with its range.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    rows: int = Field(ge=1)
    features: dict[str, FeatureRange]

    @field_validator("features")
    @classmethod
    def _the_wine_features(cls, value: dict[str, FeatureRange]) -> dict[str, FeatureRange]:
        missing = [name for name in FEATURE_NAMES if name not in value]
        unknown = sorted(set(value) - set(FEATURE_NAMES))
        if missing or unknown:
            raise ValueError(
                "must name the 13 wine features exactly"
                + (f"; missing {', '.join(missing[:3])}" if missing else "")
                + (f"; unknown {', '.join(repr(n[:40]) for n in unknown[:3])}" if unknown else "")
            )
        return {name: value[name] for name in FEATURE_NAMES}  # model order

    @classmethod
    def of(cls, features: pd.DataFrame) -> TrainingRanges:
        """The ranges and bins of a frame holding the 13 feature columns (the training split)."""
        low, high = features.min(), features.max()
        return cls(
            rows=len(features),
            features={
                name: FeatureRange(
                    min=float(low[name]),
                    max=float(high[name]),
                    bins=FeatureBins.of(features[name].to_numpy()),
                )
                for name in FEATURE_NAMES
            },
        )

    def feature_bins(self) -> tuple[FeatureBins, ...] | None:
        """Every feature's bins in :data:`FEATURE_NAMES` order, or None unless all 13 have
        them (a version logged before training wrote bins)."""
        found = tuple(b for name in FEATURE_NAMES if (b := self.features[name].bins) is not None)
        return found if len(found) == len(FEATURE_NAMES) else None

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The minima and the maxima, each in :data:`FEATURE_NAMES` order."""
        ranges = [self.features[name] for name in FEATURE_NAMES]
        return tuple(r.min for r in ranges), tuple(r.max for r in ranges)
