"""Input drift: a feature's decile bins from training, and the population stability index.

Training logs, for each feature, the 9 inner decile edges of its training split and the
share of training rows in each of the 10 bins they make (``bins`` in
``training_ranges.json``). The prediction API compares the last logged inputs with them::

    PSI = Σ (p_window - p_train) · ln(p_window / p_train)     (shares floored at 1e-4)

Below 0.1 the feature is stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one.

A value ``v`` falls in bin ``i`` = the number of edges ``≤ v`` (0 to 9): bin 0 is below the
first edge, bin 9 at or above the last. The training shares are counted with that same rule,
so a feature with few distinct values, whose deciles repeat (e.g. edges ``2, 2, 2, 3, …``),
still has well-defined bins: the bins between two equal edges are empty in training and in
every window (share 0, floored alike on both sides, so they add nothing to the PSI), and the
rows at a repeated value all land in the one bin above it, in training as in production.

numpy is imported by the functions that compute (the services that call them have it); the
model itself is plain data that any service can read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np

#: How many bins a feature has (deciles), and so how many inner edges (one fewer).
BIN_COUNT: Final = 10
EDGE_COUNT: Final = BIN_COUNT - 1
#: The smallest share either side of the PSI counts with: an empty bin would divide by zero.
SHARE_FLOOR: Final = 1e-4
#: How far the shares may add up away from 1 (rounding of the logged numbers).
SHARES_TOLERANCE: Final = 1e-6
#: The decile levels of the inner edges: 0.1, 0.2, …, 0.9.
DECILES: Final[tuple[float, ...]] = tuple(i / BIN_COUNT for i in range(1, BIN_COUNT))

#: The accepted reading of a PSI (``< 0.1`` stable, ``0.1`` to ``0.25`` moderate shift).
PSI_MODERATE: Final = 0.1
PSI_MAJOR: Final = 0.25


class FeatureBins(BaseModel):
    """One feature's training distribution as 10 bins: the 9 inner decile edges (ascending;
    equal edges allowed, see the module) and the share of training rows in each bin.

    Example::

        {"edges": [12.0, 12.3, ..., 14.1], "shares": [0.1, 0.098, ..., 0.105]}
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    edges: tuple[float, ...] = Field(min_length=EDGE_COUNT, max_length=EDGE_COUNT)
    shares: tuple[float, ...] = Field(min_length=BIN_COUNT, max_length=BIN_COUNT)

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        if not all(math.isfinite(edge) for edge in self.edges):
            raise ValueError("edges must be finite numbers")
        if any(later < earlier for earlier, later in itertools.pairwise(self.edges)):
            raise ValueError("edges must be in ascending order")
        if not all(math.isfinite(share) and 0.0 <= share <= 1.0 for share in self.shares):
            raise ValueError("shares must be numbers from 0 to 1")
        total = math.fsum(self.shares)
        if abs(total - 1.0) > SHARES_TOLERANCE:
            raise ValueError(f"shares must add up to 1, not {total:.9g}")
        return self

    @classmethod
    def of(cls, values: Sequence[float] | np.ndarray) -> FeatureBins:
        """The bins of one training column: its deciles, and each bin's share of its rows.

        Args:
            values: The column's values (at least one, all finite).

        Raises:
            ValueError: When the column is empty or holds a value that is not finite.
        """
        import numpy as np

        column = np.asarray(values, dtype=np.float64).ravel()
        if column.size == 0 or not np.isfinite(column).all():
            raise ValueError("bins need at least one value, and only finite ones")
        edges = np.quantile(column, DECILES)
        # np.quantile interpolates: rounding may leave a later edge a hair below an earlier
        # one when both fall between the same two values
        edges = np.maximum.accumulate(edges)
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=BIN_COUNT)
        shares = counts / column.size
        return cls(
            edges=tuple(float(edge) for edge in edges),
            shares=tuple(float(share) for share in shares),
        )


def bin_shares(values: Sequence[float] | np.ndarray, bins: FeatureBins) -> np.ndarray:
    """The share of ``values`` in each of the 10 bins (unfloored; sums to 1).

    Raises:
        ValueError: When there are no values.
    """
    import numpy as np

    column = np.asarray(values, dtype=np.float64).ravel()
    if column.size == 0:
        raise ValueError("a PSI needs at least one value")
    index = np.searchsorted(np.asarray(bins.edges), column, side="right")
    return np.bincount(index, minlength=BIN_COUNT) / column.size


def psi_of_shares(window: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The PSI of window shares against training shares, along the last axis.

    Args:
        window: Shares of the window, shape ``(..., 10)``.
        train: Shares of training, the same shape (or one that broadcasts).

    Returns:
        One PSI per leading index (a 0-d array for two single distributions).
    """
    import numpy as np

    p = np.maximum(window, SHARE_FLOOR)
    q = np.maximum(train, SHARE_FLOOR)
    return np.asarray(((p - q) * np.log(p / q)).sum(axis=-1))


def psi(window_column: Sequence[float] | np.ndarray, bins: FeatureBins) -> float:
    """The population stability index of one feature's window against its training bins.

    Args:
        window_column: The feature's values in the window (at least one).
        bins: The feature's training bins.

    Returns:
        The PSI (0 when the window is spread over the bins as training was).

    Raises:
        ValueError: When the window is empty.
    """
    import numpy as np

    return float(psi_of_shares(bin_shares(window_column, bins), np.asarray(bins.shares)))


@dataclass(frozen=True)
class DriftReference:
    """The bins of several features as arrays, built once per model version, for
    :meth:`psi`, which measures a whole window in a few vectorised steps.

    Attributes:
        edges: The inner edges, shape ``(features, 9)``.
        shares: The training shares, shape ``(features, 10)``.
    """

    edges: np.ndarray
    shares: np.ndarray

    @classmethod
    def of(cls, bins: Sequence[FeatureBins]) -> DriftReference:
        """Stacks the bins of the window's columns, in column order."""
        import numpy as np

        return cls(
            np.asarray([b.edges for b in bins], dtype=np.float64).reshape(-1, EDGE_COUNT),
            np.asarray([b.shares for b in bins], dtype=np.float64).reshape(-1, BIN_COUNT),
        )

    def window_shares(self, window: np.ndarray) -> np.ndarray:
        """Each column's share of the window's rows in each of its bins, ``(features, 10)``."""
        import numpy as np

        rows = np.asarray(window, dtype=np.float64)
        features = self.edges.shape[0]
        if rows.ndim != 2 or rows.shape[1] != features:
            raise ValueError(f"the window must be rows of {features} values, not {rows.shape}")
        if rows.shape[0] == 0:
            raise ValueError("a PSI needs at least one row")
        # the bin of each value: how many of its column's edges are at or below it
        index = (rows[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
        offsets = np.arange(features) * BIN_COUNT
        counts = np.bincount((index + offsets).ravel(), minlength=features * BIN_COUNT)
        return counts.reshape(features, BIN_COUNT) / rows.shape[0]

    def psi(self, window: np.ndarray) -> np.ndarray:
        """The PSI of each column of a window (rows of values, columns as the bins given).

        Args:
            window: Shape ``(n, features)`` with ``n ≥ 1``, finite values.

        Returns:
            One PSI per column, shape ``(features,)``.

        Raises:
            ValueError: When the window is empty or has another number of columns.
        """
        return psi_of_shares(self.window_shares(window), self.shares)


def window_psi(window: np.ndarray, bins: Sequence[FeatureBins]) -> np.ndarray:
    """The PSI of each column of a window, e.g. the 13 features of ``(n, 13)`` logged inputs.

    As :meth:`DriftReference.psi`; build a :class:`DriftReference` once to reuse the arrays.
    """
    return DriftReference.of(bins).psi(window)
