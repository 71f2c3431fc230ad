"""Statistics of the reference (training) data: feature ranges and a typical wine per class.

``/features`` lists each feature's range in the reference data and the form fills in the
typical samples (answers warn against the served version's own training ranges instead, see
:mod:`prediction_api.ranges`). The reference is scikit-learn's wine data set, the training
job's default data. The API reads its statistics from :data:`REFERENCE_FILE`, a
small JSON file in this package, so that it needs neither scikit-learn nor pandas at run
time; a test recomputes the file from scikit-learn's data and fails when they differ.
Regenerate it with ``python -m prediction_api.reference`` (needs the ``sklearn`` extra).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from wine_mlops.features import FEATURE_NAMES, TARGET

#: The statistics of scikit-learn's wine data set, as :func:`reference_document` computes them.
REFERENCE_FILE: Final = Path(__file__).parent / "wine_reference.json"


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


def reference_document() -> dict[str, Any]:
    """Computes the statistics from scikit-learn's wine data set (needs scikit-learn and
    pandas: for regenerating :data:`REFERENCE_FILE`, never called by the API).

    Returns:
        ``features`` (the names, in order), ``minimum``, ``maximum`` and ``mean`` (one
        number per feature) and ``typical`` (class id as text → feature name → the class's
        median, rounded to 3 decimals).
    """
    from wine_mlops.features import load_wine_frame

    frame = load_wine_frame()
    features = frame[list(FEATURE_NAMES)]
    return {
        "features": list(FEATURE_NAMES),
        "minimum": [float(v) for v in features.min()],
        "maximum": [float(v) for v in features.max()],
        "mean": [float(v) for v in features.mean()],
        "typical": {
            str(int(class_id)): {str(k): float(round(v, 3)) for k, v in group.median().items()}
            for class_id, group in features.groupby(frame[TARGET])
        },
    }


def load_reference_stats(path: Path = REFERENCE_FILE) -> ReferenceStats:
    """Reads the statistics of scikit-learn's wine data set from :data:`REFERENCE_FILE`.

    Raises:
        ValueError: When the file is not for the 13 wine features in order.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    if tuple(document["features"]) != FEATURE_NAMES:
        raise ValueError(f"{path.name} is not for the wine features {list(FEATURE_NAMES)}")
    return ReferenceStats(
        minimum=np.asarray(document["minimum"], dtype=np.float64),
        maximum=np.asarray(document["maximum"], dtype=np.float64),
        mean=np.asarray(document["mean"], dtype=np.float64),
        typical={
            int(class_id): {str(k): float(v) for k, v in values.items()}
            for class_id, values in document["typical"].items()
        },
    )


if __name__ == "__main__":
    REFERENCE_FILE.write_text(json.dumps(reference_document(), indent=1) + "\n", encoding="utf-8")
