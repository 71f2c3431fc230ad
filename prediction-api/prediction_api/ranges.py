"""Out-of-range warnings: inputs outside the range the served version was trained on.

The ranges come with the model (``training_ranges.json``, logged by training among the
version's own files), not from scikit-learn's copy of the data: a version trained on
another CSV warns by its own data. The check is two vectorised comparisons on the array
the model predicts on; warnings are built only for the (rare) values outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prediction_api.schemas import RangeWarning
from wine_mlops.features import FEATURE_NAMES
from wine_mlops.training_ranges import TrainingRanges


def warning_message(feature: str, value: float, low: float, high: float) -> str:
    """The human sentence of one warning, e.g. ``alcohol 0.132 is outside the training
    range 11.03 to 14.83``."""
    return f"{feature} {value:g} is outside the training range {low:g} to {high:g}"


@dataclass(frozen=True)
class RangeCheck:
    """The served version's training ranges, ready for the request path.

    Attributes:
        ranges: The ranges as logged with the model.
        low: The minima, in :data:`FEATURE_NAMES` order.
        high: The maxima, in the same order.
    """

    ranges: TrainingRanges
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def of(cls, ranges: TrainingRanges) -> RangeCheck:
        """Prepares the arrays of ``ranges`` once, when a version is loaded."""
        low, high = ranges.bounds()
        return cls(ranges, np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64))

    def outside(self, rows: np.ndarray) -> np.ndarray | None:
        """Which values lie outside the training range.

        Args:
            rows: A 2-D array of wines, columns in :data:`FEATURE_NAMES` order.

        Returns:
            A boolean array shaped as ``rows`` (True outside the range), or None when every
            value is inside.
        """
        mask = (rows < self.low) | (rows > self.high)
        return mask if mask.any() else None

    def sides(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How many values of each feature lie below and above the training range.

        Called only for rows :meth:`outside` found something in (the rare case).

        Args:
            rows: A 2-D array of wines, columns in :data:`FEATURE_NAMES` order.

        Returns:
            Two arrays of 13 counts, in feature order: below the minimum, above the maximum.
        """
        return (rows < self.low).sum(axis=0), (rows > self.high).sum(axis=0)

    def warnings(self, rows: np.ndarray, mask: np.ndarray) -> list[list[RangeWarning]]:
        """One list of warnings per row (empty for rows inside every range).

        Args:
            rows: The wines that were checked.
            mask: What :meth:`outside` returned for them.
        """
        found: list[list[RangeWarning]] = [[] for _ in range(len(rows))]
        for row, column in zip(*np.nonzero(mask), strict=True):
            value, low, high = float(rows[row, column]), self.low[column], self.high[column]
            feature = FEATURE_NAMES[column]
            found[row].append(
                RangeWarning(
                    feature=feature,
                    value=value,
                    training_min=float(low),
                    training_max=float(high),
                    message=warning_message(feature, value, low, high),
                )
            )
        return found
