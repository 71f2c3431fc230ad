"""The form's reference statistics come from a JSON file in the package, never out of date.

The API reads them without scikit-learn or pandas (its image has neither); this test
recomputes them from scikit-learn's wine data set and compares.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from fastapi.testclient import TestClient

from prediction_api.reference import REFERENCE_FILE, load_reference_stats, reference_document
from wine_mlops.features import FEATURE_NAMES, TARGET


def test_the_packaged_file_is_what_scikit_learns_wine_data_gives() -> None:
    stored = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    assert stored == reference_document(), (
        "prediction_api/wine_reference.json is out of date: run "
        "`python -m prediction_api.reference` and commit the file"
    )


def test_the_statistics_are_the_data_sets_ranges_means_and_class_medians(wine) -> None:
    stats = load_reference_stats()
    features = wine[list(FEATURE_NAMES)]
    assert np.array_equal(stats.minimum, features.min().to_numpy())
    assert np.array_equal(stats.maximum, features.max().to_numpy())
    assert np.allclose(stats.mean, features.mean().to_numpy(), rtol=0, atol=1e-12)
    assert sorted(stats.typical) == [0, 1, 2]
    class_two = features[wine[TARGET] == 2].median()
    assert stats.typical[2]["proline"] == round(float(class_two["proline"]), 3)
    assert list(stats.typical[0]) == list(FEATURE_NAMES)


def test_the_form_gets_its_samples_and_ranges_from_the_file(client: TestClient) -> None:
    catalog = client.get("/features").json()
    assert [f["name"] for f in catalog["features"]] == list(FEATURE_NAMES)
    proline = catalog["features"][FEATURE_NAMES.index("proline")]
    assert (proline["training_min"], proline["training_max"]) == (278.0, 1680.0)
    assert [s["class_id"] for s in catalog["samples"]] == [0, 1, 2]


def test_the_api_builds_without_importing_scikit_learn_pandas_or_scipy() -> None:
    """What the image runs: the app is built and its reference read, none of them imported."""
    code = (
        "import sys\n"
        "from prediction_api.app import create_app\n"
        "from prediction_api.settings import ApiSettings\n"
        "app = create_app(ApiSettings())\n"
        "assert app.state.reference.typical[0]['alcohol'] > 13\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'pandas', 'scipy', 'skops'})\n"
        "print(','.join(loaded) or 'none')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "none"
