"""Safe model loading: booby-trapped model files are refused and nothing from them runs.

Every trap here is live: loaded the way ``mlflow.sklearn.load_model`` loads it, it creates
its marker file (the first assertion of each such test shows that); our loader refuses it
and the marker never appears.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pytest
import skops.io
import yaml
from mlflow.models import infer_signature
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
    ONNX_MODEL_FILE,
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
        "'extra_files/training_ranges.json' and 'extra_files/model.onnx' are accepted"
    )


def onnx_file(model, tmp_path: Path) -> Path:
    """The estimator converted as training converts it, written as ``model.onnx``."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    graph = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, len(FEATURE_NAMES)]))],
        options={"zipmap": False},
    )
    path = tmp_path / "onnx" / ONNX_MODEL_FILE
    path.parent.mkdir()
    path.write_bytes(graph.SerializeToString())
    return path


def model_with_extra_files(model, wine, model_dir: Path, *files: Path) -> Path:
    """A good model (skops, signature) listing ``files`` as its extra files, as training logs."""
    features = wine[list(FEATURE_NAMES)].head(5)
    mlflow.sklearn.save_model(
        model,
        str(model_dir),
        signature=infer_signature(features, model.predict(features)),
        skops_trusted_types=list(TRUSTED_TYPES),
        pip_requirements=["scikit-learn", "skops"],
        extra_files=[str(path) for path in files],
    )
    return model_dir


@pytest.fixture
def with_onnx(fitted, wine, tmp_path: Path) -> tuple[Path, bytes]:
    """A LogisticRegression model carrying its ranges and its ONNX graph, and the graph."""
    ranges_file = tmp_path / "ranges" / TRAINING_RANGES_FILE
    ranges_file.parent.mkdir()
    ranges_file.write_text(json.dumps(ranges_document(wine)))
    model = fitted["LogisticRegression"]
    graph = onnx_file(model, tmp_path)
    model_dir = model_with_extra_files(model, wine, tmp_path / "model", ranges_file, graph)
    return model_dir, graph.read_bytes()


def without_skops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``import skops`` (and scikit-learn) fail, as in an image without them."""
    for name in ("skops", "skops.io", "sklearn"):
        monkeypatch.setitem(sys.modules, name, None)


def test_a_model_carrying_an_onnx_file_returns_its_bytes_beside_the_estimator(
    with_onnx, fitted, wine
) -> None:
    model_dir, graph = with_onnx
    loaded = load_model_files(model_dir)
    assert loaded.onnx_model == graph
    assert loaded.training_ranges is not None
    assert loaded.training_ranges.rows == 100
    features = wine[list(FEATURE_NAMES)]
    assert loaded.estimator.predict(features).tolist() == (
        fitted["LogisticRegression"].predict(features).tolist()
    )
    plain = save_good_model(fitted["LogisticRegression"], model_dir.parent / "plain", features)
    assert load_model_files(plain).onnx_model is None


def test_preferring_onnx_loads_a_version_without_skops_or_scikit_learn(
    with_onnx, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir, graph = with_onnx
    without_skops(monkeypatch)
    with pytest.raises(ImportError):  # the estimator cannot be loaded in such a process
        load_model_files(model_dir)
    loaded = load_model_files(model_dir, prefer_onnx=True)
    assert loaded.estimator is None
    assert loaded.onnx_model == graph
    assert loaded.training_ranges is not None
    assert loaded.training_ranges.rows == 100


def test_preferring_onnx_without_an_onnx_file_loads_the_estimator(fitted, wine, tmp_path) -> None:
    features = wine[list(FEATURE_NAMES)]
    plain = save_good_model(fitted["LogisticRegression"], tmp_path / "plain", features.head(5))
    loaded = load_model_files(plain, prefer_onnx=True)
    assert loaded.onnx_model is None
    assert loaded.estimator.predict(features).tolist() == (
        fitted["LogisticRegression"].predict(features).tolist()
    )


def test_no_onnx_file_and_no_scikit_learn_is_refused_with_a_way_out(
    fitted, wine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = wine[list(FEATURE_NAMES)].head(5)
    plain = save_good_model(fitted["LogisticRegression"], tmp_path / "plain", features)
    without_skops(monkeypatch)
    with pytest.raises(UnsafeModelError) as info:
        load_model_files(plain, prefer_onnx=True, what="version 4")
    assert info.value.kind == "format"
    assert info.value.reason == (
        "version 4 has no ONNX model and scikit-learn is not installed in this image: "
        "retrain it (training logs ONNX with every model)"
    )
    assert str(tmp_path) not in info.value.reason


def test_a_third_extra_file_beside_ranges_and_onnx_is_refused(
    with_onnx, fitted, wine, tmp_path: Path
) -> None:
    model_dir, _ = with_onnx
    script = tmp_path / "setup.py"
    script.write_text("print('hello')\n")
    files = [model_dir / "extra_files" / TRAINING_RANGES_FILE, onnx_file_path(model_dir), script]
    third = model_with_extra_files(fitted["LogisticRegression"], wine, tmp_path / "third", *files)
    for prefer_onnx in (False, True):
        with pytest.raises(UnsafeModelError) as info:
            load_model_files(third, prefer_onnx=prefer_onnx)
        assert info.value.kind == "malformed"
        assert "'extra_files/setup.py'" in info.value.reason


def onnx_file_path(model_dir: Path) -> Path:
    return model_dir / "extra_files" / ONNX_MODEL_FILE


def test_an_onnx_file_listed_twice_or_missing_is_refused(with_onnx) -> None:
    model_dir, _ = with_onnx
    mlmodel_path = model_dir / "MLmodel"
    document = yaml.safe_load(mlmodel_path.read_text())
    listed = document["flavors"]["sklearn"]["extra_files"]
    assert {"path": "extra_files/model.onnx"} in listed
    document["flavors"]["sklearn"]["extra_files"] = [*listed, {"path": "extra_files/model.onnx"}]
    mlmodel_path.write_text(yaml.safe_dump(document))
    with pytest.raises(UnsafeModelError) as info:
        load_model_files(model_dir, prefer_onnx=True)
    assert info.value.reason == "the model lists the same extra file twice"

    document["flavors"]["sklearn"]["extra_files"] = listed
    mlmodel_path.write_text(yaml.safe_dump(document))
    onnx_file_path(model_dir).unlink()
    with pytest.raises(UnsafeModelError) as info:
        load_model_files(model_dir, prefer_onnx=True)
    assert (info.value.kind, info.value.reason) == (
        "malformed",
        "the model lists model.onnx but lacks it",
    )


def test_an_onnx_file_over_the_size_limit_is_refused(with_onnx) -> None:
    model_dir, graph = with_onnx
    assert load_model_files(model_dir, len(graph), prefer_onnx=True).onnx_model == graph
    for prefer_onnx in (False, True):
        with pytest.raises(UnsafeModelError) as info:
            load_model_files(model_dir, len(graph) - 1, prefer_onnx=prefer_onnx)
        assert info.value.kind == "too_large"
        assert info.value.reason == (
            f"its model.onnx has {len(graph)} bytes; at most {len(graph) - 1}"
        )
