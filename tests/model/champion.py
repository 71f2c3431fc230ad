"""The champion as the product makes it: one training session, then the registry's alias.

The behaviour tests look at the model a user is served, so nothing here picks a model by
hand. A real training session (:func:`model_training.session.run_session`, what
``python -m model_training`` runs) trains every default candidate, registers the best and
moves the ``champion`` alias by the promotion rule; the champion is then loaded from the
registry by that alias with the services' safe loader
(:func:`wine_mlops.model_files.load_model_version`). The tracking store is a SQLite file in
a temporary folder: no MLflow server is needed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from model_training.data import Dataset, load_dataset
from model_training.evaluation import Split
from model_training.session import run_session, split_dataset
from model_training.settings import TrainingSettings
from wine_mlops.model_files import load_model_version
from wine_mlops.tracking import version_by_alias


class Classifier(Protocol):
    """What the tests use of the served estimator."""

    classes_: Any

    def predict(self, x: pd.DataFrame) -> np.ndarray: ...

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray: ...


@dataclass(frozen=True)
class TrainedChampion:
    """The champion of a fresh session, with the data and split it was trained on."""

    model: Classifier
    family: str
    version: str
    dataset: Dataset
    split: Split


def train_champion(workdir: Path) -> TrainedChampion:
    """Runs one training session into a SQLite store under ``workdir``; loads its champion.

    Settings are the product's defaults (seed, test size, candidates, accuracy floor), read
    the way the trainer reads them; only the tracking URI points at the temporary store.
    """
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    store: dict[str, Any] = {"MLFLOW_TRACKING_URI": uri}
    settings = TrainingSettings(**store)
    client = MlflowClient(tracking_uri=uri)
    # Created here only to keep the artifacts in workdir (the session finds it by name);
    # without it MLflow would write them to ./mlruns in the current folder.
    client.create_experiment(
        settings.experiment_name, artifact_location=(workdir / "artifacts").as_uri()
    )
    dataset = load_dataset()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        # The session sets MLflow's process-wide tracking URI (and MLFLOW_TRACKING_URI);
        # setting both here first means both are put back when the session is done.
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", uri)
        # The same MLflow hints the trainer's CLI silences: they do not apply to this data.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        run_session(dataset, settings)

    version = version_by_alias(client, settings.model_name, settings.champion_alias)
    assert version is not None, "the session promoted no champion"
    model = load_model_version(client, uri, settings.model_name, str(version.version))
    return TrainedChampion(
        model=model,
        family=version.tags.get("model_family", "unknown"),
        version=str(version.version),
        dataset=dataset,
        # The same call with the same settings as the session: the same held-out rows.
        split=split_dataset(dataset, settings.test_size, settings.seed),
    )


def probabilities(model: Classifier, wines: pd.DataFrame) -> pd.DataFrame:
    """The model's class probabilities, one row per wine, one column per class id."""
    return pd.DataFrame(
        model.predict_proba(wines),
        index=wines.index,
        columns=[int(c) for c in model.classes_],
    )
