"""Reads MLflow with a bounded number of REST requests and builds a snapshot.

One refresh makes, whatever the number of runs:

- ``search_experiments``: one request per 1,000 experiments;
- ``search_runs`` over every watched experiment at once: one request per ``page_size`` runs;
- ``search_registered_models``: one request per 1,000 models (aliases come with them);
- ``search_model_versions`` (all models at once): one request per ``page_size`` versions;
- only when an alias points at a run outside the watched experiments: one ``search_runs``
  for all such runs.

So 4 requests with up to 1,000 runs and versions, never one ``get_run`` per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from mlflow_exporter.settings import ExporterSettings
from mlflow_exporter.snapshot import (
    ExperimentRecord,
    Limits,
    ModelRecord,
    RunRecord,
    Snapshot,
    build_snapshot,
)

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: The registry refuses larger pages of registered models and experiments.
_REGISTRY_PAGE = 1000


def _run_record(run: Run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_name=run.info.run_name,
        status=run.info.status,
        start_time_ms=run.info.start_time,
        metrics=dict(run.data.metrics),
    )


class MlflowSource:
    """Reads the facts the exporter publishes from an MLflow tracking server.

    The MLflow client retries failed requests for minutes by default; the exporter process
    turns that off in :func:`mlflow_exporter.server.main` (the next refresh is the retry).

    Args:
        settings: The exporter settings.
    """

    def __init__(self, settings: ExporterSettings) -> None:
        from mlflow.tracking import MlflowClient

        self._settings = settings
        self._client: MlflowClient = MlflowClient(
            tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
        )
        self._limits = Limits(
            max_experiments=settings.max_experiments,
            max_run_names=settings.max_run_names,
            max_metrics=settings.max_metrics,
            max_models=settings.max_models,
            run_name_suffix=settings.run_name_suffix,
        )
        self._requests = 0

    def _pages(self, search: Callable[..., Any], **kwargs: Any) -> Iterator[Any]:
        """Yields every item of a paged MLflow search, counting one request per page."""
        token: str | None = None
        while True:
            self._requests += 1
            page = search(page_token=token, **kwargs)
            yield from page
            token = page.token
            if not token:
                return

    def read(self) -> Snapshot:
        """Reads MLflow once and returns a new snapshot.

        Raises:
            Exception: Whatever the MLflow client raises when the server cannot be read
                (the refresher counts it as a refresh error).
        """
        from mlflow.entities import ViewType

        self._requests = 0
        client = self._client
        every = list(
            self._pages(
                client.search_experiments,
                view_type=ViewType.ACTIVE_ONLY,
                max_results=_REGISTRY_PAGE,
                order_by=["last_update_time DESC"],
            )
        )
        wanted = self._settings.experiments
        if wanted:
            by_name = {e.name: e for e in every}
            chosen = [by_name[n] for n in wanted if n in by_name]
        else:
            chosen = every
        experiments = [ExperimentRecord(e.experiment_id, e.name) for e in chosen]

        runs: dict[str, RunRecord] = {}
        if experiments:
            for run in self._pages(
                client.search_runs,
                experiment_ids=[e.experiment_id for e in experiments],
                max_results=self._settings.page_size,
                order_by=["attributes.start_time DESC"],
            ):
                runs[run.info.run_id] = _run_record(run)

        registered = list(self._pages(client.search_registered_models, max_results=_REGISTRY_PAGE))
        version_runs: dict[str, dict[str, str | None]] = {m.name: {} for m in registered}
        for version in self._pages(
            client.search_model_versions, max_results=self._settings.page_size
        ):
            if version.name in version_runs:
                version_runs[version.name][str(version.version)] = version.run_id
        models = [
            ModelRecord(
                m.name,
                {alias: str(v) for alias, v in m.aliases.items()},
                version_runs[m.name],
            )
            for m in registered
        ]

        alias_run_ids = {
            run_id
            for m in models
            for version in m.aliases.values()
            if (run_id := m.version_runs.get(version))
        }
        alias_runs = {i: runs[i] for i in alias_run_ids if i in runs}
        missing = sorted(alias_run_ids - alias_runs.keys())
        if missing and every:
            quoted = ", ".join(f"'{i}'" for i in missing)
            for run in self._pages(
                client.search_runs,
                experiment_ids=[e.experiment_id for e in every],
                filter_string=f"attributes.run_id IN ({quoted})",
                max_results=len(missing),
            ):
                alias_runs[run.info.run_id] = _run_record(run)

        return build_snapshot(
            experiments, runs.values(), models, alias_runs, self._limits, self._requests
        )
