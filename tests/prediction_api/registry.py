"""An in-memory model registry holding real fitted scikit-learn models.

It stands in for MLflow (a dependency of the component under test, never the component
itself) so that the swap logic can be driven step by step: set an alias, make a look-up
fail, make a download fail or block until the test lets it finish.
"""

from __future__ import annotations

import threading
from typing import Any

from prediction_api.serving import VersionRef


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

    def register(self, model: Any, *, alias: bool = True) -> str:
        """Adds a version; points the alias to it unless ``alias`` is False."""
        version = str(len(self.models) + 1)
        self.models[version] = model
        if alias:
            self.aliased = version
        return version

    def lookup(self) -> VersionRef | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        if self.aliased is None:
            return None
        return VersionRef(
            name=self.name,
            version=self.aliased,
            alias=self.alias,
            run_id=f"run-{self.aliased}",
            tags={"accuracy": "0.98", "model_family": type(self.models[self.aliased]).__name__},
            source=f"models:/{self.name}/{self.aliased}",
        )

    def load(self, ref: VersionRef) -> Any:
        self.loads.append(ref.version)
        self.loading.set()
        try:
            if self.gate is not None:
                self.gate.wait(30)
            if ref.version in self.broken:
                raise OSError(f"artifact download of version {ref.version} failed")
            return self.models[ref.version]
        finally:
            self.loading.clear()
