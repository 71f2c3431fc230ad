"""The production :class:`~prediction_api.serving.ModelSource`: the MLflow model registry."""

from __future__ import annotations

from typing import Any

from prediction_api.serving import VersionRef
from prediction_api.settings import ApiSettings
from wine_mlops.model_files import ModelFiles, load_version_files
from wine_mlops.tracking import version_by_alias


class MlflowRegistrySource:
    """Looks up the served alias and downloads its versions from an MLflow server.

    Nothing global is changed: the tracking URI is passed to every call.

    Args:
        settings: Where MLflow is, the model name, the alias and the size limit.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self._uri = settings.tracking_uri
        self._name = settings.model_name
        self._alias = settings.served_alias
        self._max_bytes = settings.model_max_bytes
        self._client: Any = None

    def _registry(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._uri, registry_uri=self._uri)
        return self._client

    def lookup(self) -> VersionRef | None:
        """The version the alias points to now, or None when it is unset."""
        version = version_by_alias(self._registry(), self._name, self._alias)
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

    def run_metrics(self, ref: VersionRef) -> dict[str, float]:
        """The metrics of the run that logged the version: its test metrics (``accuracy``, …).

        The one source of these numbers: the training job logs them on the run, and the
        version carries no copy of them. Read once, when the version is loaded.
        """
        if ref.run_id is None:
            return {}
        return dict(self._registry().get_run(ref.run_id).data.metrics)

    def load(self, ref: VersionRef) -> ModelFiles:
        """Loads a version's ONNX file (or, without one, its estimator) and training ranges
        safely (:func:`wine_mlops.model_files.load_version_files`).

        With an ONNX file the skops file is not deserialised, so this works without
        scikit-learn installed (the API image); a version without one then is refused.

        Raises:
            UnsafeModelError: When the version is refused: too large, not skops, untrusted
                types, another signature or other classes, or no ONNX file and no
                scikit-learn here. Nothing from it ever runs.
        """
        return load_version_files(
            self._registry(),
            self._uri,
            ref.name,
            ref.version,
            self._max_bytes,
            prefer_onnx=True,
        )
