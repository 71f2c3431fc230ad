"""The prediction API: ready, answers with the champion, exposes its metrics."""

from __future__ import annotations

import requests

from model_training.data import load_dataset
from tests.smoke.conftest import Champion, Deployment, eventually


def test_the_api_is_ready(deployment: Deployment, wait_seconds: float) -> None:
    url = deployment.url("prediction-api")

    def ready() -> None:
        response = requests.get(f"{url}/readyz", timeout=10)
        assert response.ok, f"GET /readyz answered HTTP {response.status_code}: {response.text}"

    eventually(ready, "the API to load its model", wait_seconds)


def test_a_prediction_comes_from_the_champion(
    deployment: Deployment, champion: Champion, wait_seconds: float
) -> None:
    """Waits while the API still serves an older version: it checks the registry periodically."""
    url = deployment.url("prediction-api")
    wine = load_dataset().features.iloc[0].to_dict()

    def predicts_with_the_champion() -> None:
        response = requests.post(f"{url}/predict", json=wine, timeout=10)
        assert response.status_code == 200, response.text[:200]
        answer = response.json()
        assert answer["class_id"] in (0, 1, 2), answer
        served = str(answer["model_version"])
        assert served == champion.version, (
            f"the API serves v{served}, the champion is v{champion.version}"
        )

    eventually(predicts_with_the_champion, f"a prediction from v{champion.version}", wait_seconds)


def test_the_api_exposes_its_metrics(deployment: Deployment) -> None:
    response = requests.get(f"{deployment.url('prediction-api')}/metrics", timeout=10)
    assert response.status_code == 200
    assert "wine_api_" in response.text, "GET /metrics has no wine_api_ metric"
