"""The candidate models trained in each session."""

from __future__ import annotations

from collections.abc import Callable

from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def _scaled(model: ClassifierMixin) -> Pipeline:
    """Wraps a scale-sensitive model in a pipeline that standardises features first."""
    return Pipeline([("scaler", StandardScaler()), ("model", model)])


#: Every model family the trainer knows, by the run name it gets in MLflow.
CANDIDATES: dict[str, Callable[[int], ClassifierMixin | Pipeline]] = {
    "RandomForestClassifier": lambda seed: RandomForestClassifier(
        n_estimators=200, random_state=seed, n_jobs=1
    ),
    "KNeighborsClassifier": lambda seed: _scaled(KNeighborsClassifier(n_neighbors=5)),
    "SVC": lambda seed: _scaled(
        CalibratedClassifierCV(SVC(C=1.0, kernel="rbf", random_state=seed), ensemble=False)
    ),
    "GradientBoostingClassifier": lambda seed: GradientBoostingClassifier(random_state=seed),
    "LogisticRegression": lambda seed: _scaled(LogisticRegression(C=1.0, max_iter=2000)),
    # A baseline that always answers the most frequent class: never a default candidate,
    # but useful to check that a worse model is never promoted.
    "DummyClassifier": lambda seed: DummyClassifier(strategy="most_frequent"),
}

#: The families trained when none are named.
DEFAULT_CANDIDATES: tuple[str, ...] = (
    "RandomForestClassifier",
    "KNeighborsClassifier",
    "SVC",
    "GradientBoostingClassifier",
    "LogisticRegression",
)


def check_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Checks that every name is a known family: the one place candidate names are validated.

    :class:`model_training.settings.TrainingSettings` calls it on ``WINE_CANDIDATES`` (and
    ``--candidates``), so a session never starts with an unknown name.

    Args:
        names: Family names.

    Returns:
        The names, unchanged.

    Raises:
        ValueError: When a name is not a key of :data:`CANDIDATES`.
    """
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise ValueError(
            f"unknown candidate(s): {', '.join(unknown)}; known: {', '.join(CANDIDATES)}"
        )
    return names


def build_candidates(names: tuple[str, ...], seed: int) -> dict[str, ClassifierMixin | Pipeline]:
    """Creates fresh, unfitted estimators for the named families.

    Args:
        names: Known family names (checked by :func:`check_names`).
        seed: Random state for the models that take one.

    Returns:
        Estimators by family name, in the order given.
    """
    return {name: CANDIDATES[name](seed) for name in names}


def model_params(estimator: ClassifierMixin | Pipeline) -> dict[str, str]:
    """The hyperparameters worth logging: the model step's own, as strings.

    Args:
        estimator: A bare estimator or a pipeline whose last step is the model.
    """
    model = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    params = {k: str(v) for k, v in model.get_params(deep=False).items()}
    if isinstance(estimator, Pipeline):
        params["preprocessing"] = "+".join(name for name, _ in estimator.steps[:-1])
    return params
