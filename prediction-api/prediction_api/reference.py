"""Statistics of the reference (training) data: feature ranges and a typical wine per class.

The form shows the ranges and fills in the typical samples; the metrics count inputs outside
the ranges, a simple drift signal. The reference is scikit-learn's wine data set, the
training job's default data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame


@dataclass(frozen=True)
class ReferenceStats:
    """Per-feature statistics of the reference data, in :data:`FEATURE_NAMES` order.

    Attributes:
        minimum: Smallest value seen per feature.
        maximum: Largest value seen per feature.
        mean: Mean per feature.
        typical: For each class id, the median wine of that class (feature name → value).
    """

    minimum: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    typical: dict[int, dict[str, float]]

    def outside_counts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts, per feature, the values below the minimum and above the maximum.

        Args:
            rows: A 2-D array of wines, columns in :data:`FEATURE_NAMES` order.

        Returns:
            Two integer arrays of length 13: counts below and counts above the range.
        """
        return (rows < self.minimum).sum(axis=0), (rows > self.maximum).sum(axis=0)


def load_reference_stats() -> ReferenceStats:
    """Computes the statistics of scikit-learn's wine data set (no network needed)."""
    frame = load_wine_frame()
    features = frame[list(FEATURE_NAMES)]
    typical = {
        int(class_id): {str(k): float(round(v, 3)) for k, v in group.median().items()}
        for class_id, group in features.groupby(frame[TARGET])
    }
    return ReferenceStats(
        minimum=features.min().to_numpy(dtype=np.float64),
        maximum=features.max().to_numpy(dtype=np.float64),
        mean=features.mean().to_numpy(dtype=np.float64),
        typical=typical,
    )
