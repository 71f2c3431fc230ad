"""Reads MLflow with bounded work per refresh and builds a snapshot.

Reading a run through the REST API costs the tracking server about 1.5 ms (it loads and
serialises the run's metrics, params and tags), so a refresh never reads every run. Whatever
the size of the tracking store, one refresh makes:

- ``search_experiments``: one request per 1,000 experiments;
- per watched experiment (at most ``EXPORTER_MAX_EXPERIMENTS``): ``search_runs`` for its
  newest runs, newest first, ``EXPORTER_PAGE_SIZE`` runs a request, until it has read
  ``EXPORTER_RUNS_PER_EXPERIMENT`` runs (fewer when ``EXPORTER_MAX_RUNS_PER_REFRESH``
  divided by the number of experiments is smaller) or the experiment has no more;
- ``search_registered_models``: one request per 1,000 models (aliases and the newest
  version's number come with them);
- ``get_model_version`` per alias of the exported models (its run id);
- only when an alias points at a run that was not read: one ``search_runs`` for all such
  runs, filtered by run id on the server.

So the runs read are bounded by ``EXPORTER_MAX_RUNS_PER_REFRESH`` and the requests by the
number of experiments, pages and aliases, never by the number of runs or model versions.
"""

from __future__ import annotations

import logging
import time
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
        #: Per experiment whose runs outnumber the window: the start time (ms) of the oldest
        #: run read last time, which bounds the next search.
        self._since: dict[str, int] = {}
        #: Seconds of pause per second of search: MLflow serves the exporter at most
        #: ``EXPORTER_MLFLOW_DUTY`` of the time while runs are read.
        self._idle_ratio = 1 / settings.mlflow_duty - 1
        self._pause = 0.0

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

    def _search_newest(
        self, experiment_id: str, window: int, since_ms: int | None
    ) -> tuple[list[RunRecord], bool]:
        """Up to ``window`` active runs of one experiment, newest first, in pages.

        Args:
            experiment_id: The experiment.
            window: How many runs at most.
            since_ms: Only runs that started at or after this time (Unix ms), or None.

        Returns:
            The runs and whether the search had more.
        """
        runs: list[RunRecord] = []
        token: str | None = None
        while len(runs) < window:
            if runs:  # leave MLflow idle for a while between two pages
                time.sleep(self._pause)
            self._requests += 1
            started = time.perf_counter()
            page = self._client.search_runs(
                experiment_ids=[experiment_id],
                filter_string="" if since_ms is None else f"attributes.start_time >= {since_ms}",
                max_results=min(self._settings.page_size, window - len(runs)),
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(_run_record(run) for run in page)
            self._pause = (time.perf_counter() - started) * self._idle_ratio
            token = page.token
            if not token:
                return runs, False
        return runs, True

    def _newest_runs(self, experiment_id: str, window: int) -> tuple[list[RunRecord], bool]:
        """The newest ``window`` active runs of one experiment, newest first.

        Once an experiment holds more runs than the window, the search is filtered on the
        server by the start time of the oldest run of the last window: runs only ever join
        an experiment, and start times never change, so the newest runs are all at or after
        it, and the database sorts those few runs instead of every run of the experiment.
        When that finds fewer than the window (runs were deleted since), the search runs
        again without the filter.

        Returns:
            The runs and whether the experiment holds more runs than were read.
        """
        since = self._since.get(experiment_id)
        runs, more = self._search_newest(experiment_id, window, since)
        if since is not None:
            if len(runs) < window:
                runs, more = self._search_newest(experiment_id, window, None)
            else:
                more = True  # the last window was full and had older runs behind it
        oldest = runs[-1].start_time_ms if runs else None
        if more and oldest is not None:
            self._since[experiment_id] = oldest
        else:
            self._since.pop(experiment_id, None)
        return runs, more

    def read(self) -> Snapshot:
        """Reads MLflow once and returns a new snapshot.

        Raises:
            Exception: Whatever the MLflow client raises when the server cannot be read
                (the refresher counts it as a refresh error).
        """
        from mlflow.entities import ViewType

        self._requests = 0
        client = self._client
        settings = self._settings
        every = list(
            self._pages(
                client.search_experiments,
                view_type=ViewType.ACTIVE_ONLY,
                max_results=_REGISTRY_PAGE,
                order_by=["last_update_time DESC"],
            )
        )
        wanted = settings.experiments
        if wanted:
            by_name = {e.name: e for e in every}
            chosen = [by_name[n] for n in wanted if n in by_name]
        else:
            chosen = every
        experiments = [ExperimentRecord(e.experiment_id, e.name) for e in chosen]

        # Only the experiments the snapshot keeps are read; the budget is shared among them.
        read_from = experiments[: settings.max_experiments]
        window = min(
            settings.runs_per_experiment,
            max(1, settings.max_runs_per_refresh // max(1, len(read_from))),
        )
        runs: dict[str, RunRecord] = {}
        capped = False
        for experiment in read_from:
            newest, more = self._newest_runs(experiment.experiment_id, window)
            runs.update((run.run_id, run) for run in newest)
            capped = capped or more

        registered = list(self._pages(client.search_registered_models, max_results=_REGISTRY_PAGE))
        models = []
        for position, model in enumerate(registered):
            aliases = {alias: str(v) for alias, v in model.aliases.items()}
            version_runs: dict[str, str | None] = {}
            if position < settings.max_models:  # the others are dropped from the snapshot
                for version in sorted(set(aliases.values())):
                    self._requests += 1
                    version_runs[version] = client.get_model_version(model.name, version).run_id
            newest_version = max(
                (int(v.version) for v in model.latest_versions or () if str(v.version).isdigit()),
                default=0,
            )
            models.append(ModelRecord(model.name, aliases, version_runs, newest_version))

        alias_run_ids = {run_id for m in models for run_id in m.version_runs.values() if run_id}
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
            experiments,
            runs.values(),
            models,
            alias_runs,
            self._limits,
            self._requests,
            run_window=window,
            run_cap_reached=capped,
        )
