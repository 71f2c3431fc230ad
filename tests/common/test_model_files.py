"""Safe model loading: booby-trapped model files are refused and nothing from them runs.

Every trap here is live: loaded the way ``mlflow.sklearn.load_model`` loads it, it creates
its marker file (the first assertion of each such test shows that); our loader refuses it
and the marker never appears.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pytest
import skops.io
from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
from sklearn.linear_model import LogisticRegression

from model_training.candidates import CANDIDATES
from tests.support.model_traps import (
    SKOPS_TRAP_TYPE,
    pickle_trap_dir,
    rename_skops_root,
    save_good_model,
    skops_trap_dir,
    write_mlmodel,
)
from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame
from wine_mlops.model_files import (
    TRUSTED_TYPES,
    UnsafeModelError,
    check_artifacts_size,
    load_model_dir,
    load_model_files,
)
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges


@pytest.fixture(scope="module")
def wine():
    return load_wine_frame()


@pytest.fixture(scope="module")
def fitted(wine) -> dict[str, object]:
    """Every candidate family, fitted on the wine data as training fits it."""
    features = wine[list(FEATURE_NAMES)]
    return {name: make(42).fit(features, wine[TARGET]) for name, make in CANDIDATES.items()}


def refusal(model_dir: Path) -> UnsafeModelError:
    with pytest.raises(UnsafeModelError) as info:
        load_model_dir(model_dir)
    return info.value


@pytest.mark.parametrize("family", list(CANDIDATES))
def test_every_candidate_family_loads_with_the_fixed_trusted_types(
    family: str, fitted, wine, tmp_path: Path
) -> None:
    features = wine[list(FEATURE_NAMES)]
    model = fitted[family]
    loaded = load_model_dir(save_good_model(model, tmp_path / "model", features.head(5)))
    assert type(loaded) is type(model)
    assert loaded.predict(features).tolist() == model.predict(features).tolist()
    np.testing.assert_allclose(loaded.predict_proba(features), model.predict_proba(features))


def test_the_trusted_types_are_exactly_those_the_candidates_need(fitted) -> None:
    needed = set()
    for model in fitted.values():
        needed |= set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    assert set(TRUSTED_TYPES) == needed


@pytest.mark.parametrize("serialization_format", ["pickle", "cloudpickle"])
def test_a_pickled_model_is_refused_before_it_is_unpickled(
    serialization_format: str, tmp_path: Path
) -> None:
    control = tmp_path / "control-ran"
    mlflow.sklearn.load_model(str(pickle_trap_dir(tmp_path / "control", control)))
    assert control.exists()  # the trap is live: MLflow's own loader ran the command

    marker = tmp_path / "trap-ran"
    trap = pickle_trap_dir(tmp_path / "trap", marker, serialization_format)
    error = refusal(trap)
    assert error.kind == "format"
    assert f"serialization format '{serialization_format}' is not accepted" in error.reason
    assert not marker.exists()


@pytest.mark.parametrize("declared", ["joblib", None])
def test_any_other_or_missing_format_is_refused(declared: str | None, tmp_path: Path) -> None:
    marker = tmp_path / "trap-ran"
    trap = pickle_trap_dir(tmp_path / "trap", marker, serialization_format=declared)  # type: ignore[arg-type]
    assert refusal(trap).kind == "format"
    assert not marker.exists()


def test_a_skops_object_of_an_untrusted_type_is_refused_even_when_the_model_trusts_it(
    tmp_path: Path,
) -> None:
    control = tmp_path / "control-ran"
    mlflow.sklearn.load_model(str(skops_trap_dir(tmp_path / "control", control)))
    assert control.exists()  # MLflow trusts what the model's own MLmodel lists

    marker = tmp_path / "trap-ran"
    error = refusal(skops_trap_dir(tmp_path / "trap", marker))
    assert error.kind == "untrusted_types"
    assert repr(SKOPS_TRAP_TYPE) in error.reason
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"), [("builtins", "eval"), ("os", "system"), ("subprocess", "Popen")]
)
def test_a_skops_schema_naming_a_dangerous_type_is_refused(
    module: str, name: str, fitted, wine, tmp_path: Path
) -> None:
    features = wine[list(FEATURE_NAMES)].head(5)
    model_dir = save_good_model(fitted["LogisticRegression"], tmp_path / "model", features)
    skops_path = model_dir / "model.skops"
    rename_skops_root(skops_path, module, name)
    assert f"{module}.{name}" in skops.io.get_untrusted_types(file=skops_path)
    error = refusal(model_dir)
    assert error.kind == "untrusted_types"
    assert f"'{module}.{name}'" in error.reason


def test_a_model_with_twelve_features_is_refused(wine, tmp_path: Path) -> None:
    twelve = wine[list(FEATURE_NAMES[:12])]
    model = LogisticRegression(max_iter=5000).fit(twelve, wine[TARGET])
    error = refusal(save_good_model(model, tmp_path / "model", twelve.head(5)))
    assert error.kind == "signature"
    assert "12 input(s)" in error.reason


def test_a_model_with_two_classes_is_refused(wine, tmp_path: Path) -> None:
    two = wine[wine[TARGET] < 2]
    features = two[list(FEATURE_NAMES)]
    model = LogisticRegression(max_iter=5000).fit(features, two[TARGET])
    error = refusal(save_good_model(model, tmp_path / "model", features.head(5)))
    assert error.kind == "classes"
    assert "2 class(es)" in error.reason


def test_a_model_without_signature_is_refused(fitted, wine, tmp_path: Path) -> None:
    model_dir = save_good_model(
        fitted["LogisticRegression"], tmp_path / "model", wine[list(FEATURE_NAMES)].head(5)
    )
    write_mlmodel(model_dir, "skops", "model.skops", signature=None)
    assert refusal(model_dir).kind == "signature"


def test_mlmodel_is_read_as_plain_data(tmp_path: Path) -> None:
    marker = tmp_path / "yaml-ran"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(
        f"flavors: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    error = refusal(model_dir)
    assert (error.kind, error.reason) == ("malformed", "its MLmodel file is not valid YAML")
    assert not marker.exists()


def test_a_model_file_outside_the_model_directory_is_refused(fitted, tmp_path: Path) -> None:
    skops.io.dump(fitted["LogisticRegression"], tmp_path / "elsewhere.skops")
    model_dir = write_mlmodel(tmp_path / "model", "skops", "../elsewhere.skops")
    assert refusal(model_dir).kind == "malformed"


def test_a_damaged_skops_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    model_dir = write_mlmodel(tmp_path / "model", "skops", "model.skops")
    (model_dir / "model.skops").write_bytes(b"not a zip file")
    error = refusal(model_dir)
    assert error.kind == "malformed"
    assert str(tmp_path) not in error.reason


def test_the_size_of_every_artifact_is_added_up_before_download(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "MLmodel").write_bytes(b"x" * 100)
    (root / "nested" / "a.bin").write_bytes(b"x" * 1000)
    (root / "nested" / "deeper" / "b.bin").write_bytes(b"x" * 10_000)
    repository = LocalArtifactRepository(str(root))
    assert check_artifacts_size(repository, max_bytes=11_100) == 11_100
    with pytest.raises(UnsafeModelError) as info:
        check_artifacts_size(repository, max_bytes=11_099)
    assert info.value.kind == "too_large"
    assert "11099 bytes" in info.value.reason


def ranges_document(wine) -> dict[str, Any]:
    """A valid ranges document: those of the first 100 wines."""
    ranges = TrainingRanges.of(wine[list(FEATURE_NAMES)].head(100))
    document: dict[str, Any] = json.loads(ranges.model_dump_json())
    return document


def model_with_ranges(fitted, wine, tmp_path: Path, document: object) -> Path:
    """A good model whose extra files hold ``document`` as its training ranges."""
    ranges_file = tmp_path / "ranges" / TRAINING_RANGES_FILE
    ranges_file.parent.mkdir()
    ranges_file.write_text(json.dumps(document))
    features = wine[list(FEATURE_NAMES)].head(5)
    return save_good_model(fitted["LogisticRegression"], tmp_path / "model", features, ranges_file)


def test_a_model_carries_its_training_ranges_and_one_without_has_none(
    fitted, wine, tmp_path: Path
) -> None:
    document = ranges_document(wine)
    loaded = load_model_files(model_with_ranges(fitted, wine, tmp_path, document))
    assert loaded.training_ranges is not None
    assert loaded.training_ranges.rows == 100
    assert loaded.training_ranges.features["alcohol"].min == float(wine["alcohol"].head(100).min())
    assert list(loaded.training_ranges.features) == list(FEATURE_NAMES)
    assert loaded.estimator.predict(wine[list(FEATURE_NAMES)]).tolist() == (
        fitted["LogisticRegression"].predict(wine[list(FEATURE_NAMES)]).tolist()
    )

    plain = save_good_model(
        fitted["LogisticRegression"], tmp_path / "plain", wine[list(FEATURE_NAMES)].head(5)
    )
    assert load_model_files(plain).training_ranges is None


def _without_proline(document: dict[str, Any]) -> None:
    del document["features"]["proline"]


def _with_unknown_feature(document: dict[str, Any]) -> None:
    document["features"]["sugar"] = {"min": 1.0, "max": 2.0}


def _reversed_alcohol(document: dict[str, Any]) -> None:
    document["features"]["alcohol"] = {"min": 14.8, "max": 11.0}


def _text_number(document: dict[str, Any]) -> None:
    document["features"]["hue"]["max"] = "1.7"


def _extra_key(document: dict[str, Any]) -> None:
    document["features"]["ash"]["mean"] = 2.3


def _no_rows(document: dict[str, Any]) -> None:
    document["rows"] = 0


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (_without_proline, "missing proline"),
        (_with_unknown_feature, "unknown 'sugar'"),
        (_reversed_alcohol, "features.alcohol: Value error, min 14.8 is above max 11"),
        (_text_number, "features.hue.max: Input should be a valid number"),
        (_extra_key, "features.ash.mean: Extra inputs are not permitted"),
        (_no_rows, "rows: Input should be greater than or equal to 1"),
    ],
)
def test_training_ranges_that_are_not_13_ordered_finite_ranges_refuse_the_model(
    damage, said: str, fitted, wine, tmp_path: Path
) -> None:
    document = ranges_document(wine)
    damage(document)
    error = refusal(model_with_ranges(fitted, wine, tmp_path, document))
    assert error.kind == "malformed"
    assert error.reason.startswith(f"its {TRAINING_RANGES_FILE} is invalid (1 error(s); ")
    assert said in error.reason


def test_non_finite_or_non_json_ranges_refuse_the_model(fitted, wine, tmp_path: Path) -> None:
    document = ranges_document(wine)
    model_dir = model_with_ranges(fitted, wine, tmp_path, document)
    ranges_file = model_dir / "extra_files" / TRAINING_RANGES_FILE
    text = json.dumps(document)
    ranges_file.write_text(text.replace('"max": 14.83', '"max": Infinity', 1))
    assert "Infinity" in ranges_file.read_text()
    error = refusal(model_dir)
    assert error.kind == "malformed"
    assert error.reason.startswith(f"its {TRAINING_RANGES_FILE} is invalid (")
    ranges_file.write_text("{not json")
    assert refusal(model_dir).kind == "malformed"
    ranges_file.unlink()
    assert refusal(model_dir).reason == f"the model lists {TRAINING_RANGES_FILE} but lacks it"


def test_a_model_listing_any_other_extra_file_is_refused(fitted, wine, tmp_path: Path) -> None:
    script = tmp_path / "setup.py"
    script.write_text("print('hello')\n")
    model_dir = save_good_model(
        fitted["LogisticRegression"], tmp_path / "model", wine[list(FEATURE_NAMES)].head(5), script
    )
    error = refusal(model_dir)
    assert error.kind == "malformed"
    assert error.reason == (
        "the model lists extra files 'extra_files/setup.py'; only "
        "'extra_files/training_ranges.json' is accepted"
    )
