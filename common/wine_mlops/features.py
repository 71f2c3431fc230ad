"""The wine feature schema: the single source of truth for column names and classes.

The 13 features are the columns of :func:`sklearn.datasets.load_wine`, in snake_case
(``od280/od315_of_diluted_wines`` becomes ``od280_od315_of_diluted_wines``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pandas as pd

#: Name of the label column in a training CSV.
TARGET: Final = "target"

#: The 13 feature names, in the order the models expect them.
FEATURE_NAMES: Final[tuple[str, ...]] = (
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280_od315_of_diluted_wines",
    "proline",
)

#: Class ids of the three cultivars in the wine data set.
CLASS_IDS: Final[tuple[int, ...]] = (0, 1, 2)

#: Default human labels of the three cultivars (the thesis's "types" of wine), by class id.
CLASS_NAMES: Final[tuple[str, ...]] = ("Cultivar 1", "Cultivar 2", "Cultivar 3")


def class_name(class_id: int, names: Sequence[str] = CLASS_NAMES) -> str:
    """The human label of a class id: the one place class ids are mapped to labels.

    Args:
        class_id: A class id such as ``0``.
        names: Labels indexed by class id (default :data:`CLASS_NAMES`; the API takes
            them from ``WINE_CLASS_NAMES``).

    Returns:
        The label, e.g. ``"Cultivar 1"``; ``"class <id>"`` when ``names`` has none for it.
    """
    if 0 <= class_id < len(names):
        return names[class_id]
    return f"class {class_id}"


def snake_case(name: str) -> str:
    """Turns a scikit-learn wine column name into the stack's snake_case name.

    Args:
        name: A column name such as ``"od280/od315_of_diluted_wines"``.

    Returns:
        The name in lower snake_case, e.g. ``"od280_od315_of_diluted_wines"``.
    """
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def load_wine_frame() -> pd.DataFrame:
    """Loads scikit-learn's wine data as one frame: the 13 features and ``target``.

    Returns:
        A frame of 178 rows with the columns :data:`FEATURE_NAMES` and :data:`TARGET`.
    """
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.rename(columns=snake_case)
    if tuple(frame.columns[:-1]) != FEATURE_NAMES:  # guards the schema against upstream drift
        raise RuntimeError(f"unexpected wine columns: {list(frame.columns)}")
    return frame
