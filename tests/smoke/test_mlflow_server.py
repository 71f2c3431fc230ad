"""MLflow: the server answers, and the champion is a version good enough to serve."""

from __future__ import annotations

import requests

from tests.smoke.conftest import Champion, Deployment
from wine_mlops.settings import MlflowSettings


def test_mlflow_answers_its_health_check(deployment: Deployment) -> None:
    url = deployment.url("mlflow-server")
    response = requests.get(f"{url}/health", timeout=10)
    assert response.status_code == 200, response.text[:200]


def test_the_champion_is_at_least_as_accurate_as_the_floor(
    champion: Champion, settings: MlflowSettings
) -> None:
    assert champion.accuracy is not None, (
        f"champion v{champion.version}: its run {champion.run_id} has no accuracy metric"
    )
    assert champion.accuracy >= settings.min_accuracy, (
        f"champion v{champion.version} accuracy {champion.accuracy:.4f} is below the floor "
        f"{settings.min_accuracy:.4f}"
    )
