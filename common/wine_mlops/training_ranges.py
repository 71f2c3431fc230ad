"""The range of every feature in a model's training split, logged with the model itself.

Training writes it as ``training_ranges.json`` among the model's own files (the sklearn
flavour's ``extra_files``), so whoever downloads a version gets the ranges of exactly the
data that version was fitted on; the prediction API warns about inputs outside them. The
file is data from a model directory, so it is read strictly: the 13 wine features, each
with a finite ``min`` not above its ``max``, and nothing else.

Example::

    {"rows": 133, "features": {"alcohol": {"min": 11.03, "max": 14.83}, ...}}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wine_mlops.features import FEATURE_NAMES

if TYPE_CHECKING:
    import pandas as pd

#: The file's name inside the model directory's ``extra_files`` folder.
TRAINING_RANGES_FILE: Final = "training_ranges.json"


class FeatureRange(BaseModel):
    """One feature's smallest and largest value in the training split."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
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
        """The ranges of a frame holding the 13 feature columns (the training split)."""
        low, high = features.min(), features.max()
        return cls(
            rows=len(features),
            features={
                name: FeatureRange(min=float(low[name]), max=float(high[name]))
                for name in FEATURE_NAMES
            },
        )

    def bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The minima and the maxima, each in :data:`FEATURE_NAMES` order."""
        ranges = [self.features[name] for name in FEATURE_NAMES]
        return tuple(r.min for r in ranges), tuple(r.max for r in ranges)
