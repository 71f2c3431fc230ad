"""An in-memory model registry holding real fitted scikit-learn models.

It stands in for MLflow (a dependency of the component under test, never the component
itself) so that the swap logic can be driven step by step: set an alias, make a look-up
fail, make a download fail or block until the test lets it finish. A version registered as
a model directory is loaded from it by the real safe loader, as the MLflow source does
after its download (its ONNX file rather than its estimator, when it has one).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from prediction_api.serving import VersionRef
from wine_mlops.model_files import ModelFiles, load_model_files


class InMemoryRegistry:
    """Versions of one registered model, and an alias pointing to one of them."""

    def __init__(self, name: str = "wine-classifier", alias: str = "champion") -> None:
        self.name = name
        self.alias = alias
        self.models: dict[str, Any] = {}
        self.aliased: str | None = None
        self.lookup_error: Exception | None = None
        self.broken: set[str] = set()
        self.gate: threading.Event | None = None  # when set, load() waits for it
        self.loading = threading.Event()  # set while a load() is in progress
        self.loads: list[str] = []
        self.lookups = 0
        #: The test metrics of each version's run (a run's, not the version's: as MLflow's).
        self.metrics: dict[str, dict[str, float]] = {}
        self.metric_reads: list[str] = []

    def register(
        self, model: Any, *, alias: bool = True, metrics: dict[str, float] | None = None
    ) -> str:
        """Adds a version (an estimator or a model directory); points the alias to it.

        Args:
            model: A fitted estimator, or the :class:`~pathlib.Path` of an MLflow model
                directory (loaded with :func:`wine_mlops.model_files.load_model_files`), or the
                :class:`~wine_mlops.model_files.ModelFiles` of one (estimator and ranges).
            alias: Point the alias to the new version (the default).
            metrics: The test metrics of its run (default: an accuracy of 0.98).
        """
        version = str(len(self.models) + 1)
        self.models[version] = model
        self.metrics[version] = {"accuracy": 0.98} if metrics is None else metrics
        if alias:
            self.aliased = version
        return version

    def lookup(self) -> VersionRef | None:
        self.lookups += 1
        if self.lookup_error is not None:
            raise self.lookup_error
        if self.aliased is None:
            return None
        return VersionRef(
            name=self.name,
            version=self.aliased,
            alias=self.alias,
            run_id=f"run-{self.aliased}",
            tags={"model_family": type(self._estimator(self.aliased)).__name__},
            source=f"models:/{self.name}/{self.aliased}",
        )

    def _estimator(self, version: str) -> Any:
        model = self.models[version]
        return model.estimator if isinstance(model, ModelFiles) else model

    def run_metrics(self, ref: VersionRef) -> dict[str, float]:
        self.metric_reads.append(ref.version)
        return dict(self.metrics[ref.version])

    def load(self, ref: VersionRef) -> Any:
        self.loads.append(ref.version)
        self.loading.set()
        try:
            if self.gate is not None:
                self.gate.wait(30)
            if ref.version in self.broken:
                raise OSError(f"artifact download of version {ref.version} failed")
            model = self.models[ref.version]
            if isinstance(model, Path):  # as the MLflow source loads it, ONNX first
                return load_model_files(model, prefer_onnx=True, what=f"version {ref.version}")
            return model
        finally:
            self.loading.clear()
