"""Fixtures of the exporter's unit tests: a hand-made snapshot and a scripted source."""

from __future__ import annotations

import math

import pytest

from mlflow_exporter.snapshot import AliasFacts, ExperimentFacts, LatestRun, ModelFacts, Snapshot


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedSource:
    """A snapshot source that plays a script: a snapshot to return or an error to raise.

    It stands in for MLflow; the exporter (refresher, collectors, app) is what is tested.
    """

    def __init__(self, *script: Snapshot | Exception) -> None:
        self.script = list(script)
        self.reads = 0

    def read(self) -> Snapshot:
        self.reads += 1
        step = self.script[min(self.reads, len(self.script)) - 1]
        if isinstance(step, Exception):
            raise step
        return step


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def snapshot() -> Snapshot:
    """Two experiments (one empty), odd names, a NaN metric, a model with two aliases.

    Metric names carry their unit already, as :func:`~mlflow_exporter.snapshot.build_snapshot`
    makes them.
    """
    return Snapshot(
        experiments=(
            ExperimentFacts(
                name="empty",
                runs_by_status=(("RUNNING", 0), ("FINISHED", 0)),
                latest_runs=(),
            ),
            ExperimentFacts(
                name="wine-classifier",
                runs_by_status=(("RUNNING", 1), ("FINISHED", 12), ("FAILED", 2)),
                latest_runs=(
                    LatestRun(
                        "RandomForestClassifier", 1_699_999_000.0, (("accuracy_ratio", 0.97),)
                    ),
                    LatestRun('odd "name" \\ é', None, (("log_loss", math.nan),)),
                    LatestRun("no-metrics", 1_699_999_500.0, ()),
                ),
            ),
        ),
        models=(
            ModelFacts(
                name="wine-classifier",
                versions=6,
                aliases=(
                    AliasFacts("challenger", "6", "run6", (("accuracy_ratio", 0.9),)),
                    AliasFacts(
                        "champion",
                        "4",
                        "run4",
                        (("accuracy_ratio", 0.98), ("f1_macro_ratio", 0.97)),
                    ),
                ),
            ),
        ),
        runs_read=15,
        requests=4,
        dropped=(("run_names", 2),),
    )
