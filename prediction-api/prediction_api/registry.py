"""The production :class:`~prediction_api.serving.ModelSource`: the MLflow model registry."""

from __future__ import annotations

import tempfile
from typing import Any

from prediction_api.serving import VersionRef
from prediction_api.settings import ApiSettings
from wine_mlops.tracking import version_by_alias


class MlflowRegistrySource:
    """Looks up the served alias and downloads its versions from an MLflow server.

    Nothing global is changed: the tracking URI is passed to every call.

    Args:
        settings: Where MLflow is, the model name and the alias.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self._uri = settings.tracking_uri
        self._name = settings.model_name
        self._alias = settings.served_alias
        self._client: Any = None

    def lookup(self) -> VersionRef | None:
        """The version the alias points to now, or None when it is unset."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._uri, registry_uri=self._uri)
        version = version_by_alias(self._client, self._name, self._alias)
        if version is None:
            return None
        return VersionRef(
            name=self._name,
            version=str(version.version),
            alias=self._alias,
            run_id=version.run_id or None,
            tags=dict(version.tags or {}),
            source=f"models:/{self._name}/{version.version}",
        )

    def load(self, ref: VersionRef) -> Any:
        """Downloads a version into a temporary folder and loads its sklearn estimator."""
        import mlflow.artifacts
        import mlflow.sklearn

        with tempfile.TemporaryDirectory(prefix="wine-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=ref.source, dst_path=tmp, tracking_uri=self._uri
            )
            return mlflow.sklearn.load_model(local)
