"""The prediction API's container runs the champion's ONNX file without scikit-learn.

Runs after tests/e2e/test_serving.py (see MODULE_ORDER), on the same stack, whose training
logged an ONNX file with every model.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.e2e.conftest import API, Stack

pytestmark = pytest.mark.e2e


def test_the_api_container_serves_onnx_and_has_no_scikit_learn(stack: Stack) -> None:
    model = requests.get(f"{API}/model", timeout=10).json()
    assert model["runtime"] == "onnx"
    wine = {name: info["training_min"] for name, info in _features().items()}
    answer = requests.post(f"{API}/predict", json=wine, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == model["model_version"]
    with pytest.raises(subprocess.CalledProcessError) as refused:
        stack.compose("exec", "-T", "prediction-api", "python3", "-c", "import sklearn")
    assert "No module named 'sklearn'" in refused.value.stderr
    with pytest.raises(subprocess.CalledProcessError):
        stack.compose("exec", "-T", "prediction-api", "python3", "-m", "pip", "--version")


def _features() -> dict[str, dict[str, float]]:
    catalog = requests.get(f"{API}/features", timeout=10).json()
    return {feature["name"]: feature for feature in catalog["features"]}
