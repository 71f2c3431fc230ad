"""Loading registered models without ever running code that comes from a model's files.

``mlflow.sklearn.load_model`` honours whatever the model's own ``MLmodel`` file says: a
``pickle`` format runs the pickle (and any ``__reduce__`` in it), and for ``skops`` the list
of trusted types comes from that same file. Whoever can register a version and move an
alias could therefore run code in the services that load it. This module loads a model
only on our own terms:

- the artifacts' total size is checked before anything is downloaded;
- ``MLmodel`` is read with ``yaml.safe_load`` and must declare the ``sklearn`` flavor with
  ``serialization_format: skops``; any other format is refused before a byte is
  deserialised;
- the signature's inputs must be the 13 wine features, in order;
- the only extra files a model may carry (listed in the sklearn flavor's ``extra_files``,
  each at most once) are its training ranges
  (:data:`~wine_mlops.training_ranges.TRAINING_RANGES_FILE`), read as strictly validated
  JSON, and its ONNX graph (:data:`ONNX_MODEL_FILE`, written by training beside the skops
  file), whose size is checked and whose bytes are returned as they are: this module never
  parses the graph. Whoever runs it does so with onnxruntime, which executes no Python code
  from a model file and refuses operator domains it does not know, and checks the graph's
  inputs, outputs and metadata itself;
- the skops file may name only skops' default-trusted types and :data:`TRUSTED_TYPES`, a
  fixed list kept here (the ``skops_trusted_types`` written in ``MLmodel`` is ignored);
- the loaded estimator must classify into the classes 0, 1 and 2.

A caller that serves the ONNX graph asks for it with ``prefer_onnx=True``: when the version
has one, the skops file is then not deserialised at all, so a process without scikit-learn
or skops installed can load it (both are imported only when an estimator is needed).

Every refusal is an :class:`UnsafeModelError` carrying a short machine ``kind`` (one of
:data:`REFUSAL_KINDS`, fit for a metric label) and a human ``reason`` that names no local
path, host or URL.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import yaml
from pydantic import ValidationError

from wine_mlops.features import CLASS_IDS, FEATURE_NAMES
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: Types our candidate families need beyond skops' defaults (model_training.candidates):
#: the trees of RandomForest and GradientBoosting, KNN's KD-tree and its distance metric,
#: and the calibration wrappers of the calibrated SVC. A test fits every family and proves
#: that it loads with exactly this list; extend it only after reviewing what a type can do.
TRUSTED_TYPES: Final[tuple[str, ...]] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.tree._tree.Tree",
)

#: The only serialization format accepted: skops, audited against :data:`TRUSTED_TYPES`.
ACCEPTED_FORMAT: Final = "skops"

#: Largest total size of a model version's artifacts (and of its unpacked skops file).
DEFAULT_MAX_BYTES: Final = 200 * 1024 * 1024

#: The reasons a model is refused, as short labels (a metric label has these values only).
REFUSAL_KINDS: Final[tuple[str, ...]] = (
    "too_large",
    "malformed",
    "format",
    "signature",
    "untrusted_types",
    "classes",
    "invalid",
)

MLMODEL_FILE: Final = "MLmodel"
_MAX_MLMODEL_BYTES: Final = 1024 * 1024

#: Where MLflow puts a flavor's ``extra_files`` inside the model directory.
EXTRA_FILES_DIR: Final = "extra_files"
#: The file name of a model's ONNX graph among its extra files (training logs it).
ONNX_MODEL_FILE: Final = "model.onnx"
#: Where the training ranges and the ONNX graph are, inside the model directory.
RANGES_EXTRA_FILE: Final = f"{EXTRA_FILES_DIR}/{TRAINING_RANGES_FILE}"
ONNX_EXTRA_FILE: Final = f"{EXTRA_FILES_DIR}/{ONNX_MODEL_FILE}"
#: The extra files a model may list (its sklearn flavor's ``extra_files``), each at most once.
ALLOWED_EXTRA_FILES: Final[tuple[str, ...]] = (RANGES_EXTRA_FILE, ONNX_EXTRA_FILE)
_MAX_RANGES_BYTES: Final = 64 * 1024
_MAX_LISTING_ENTRIES: Final = 10_000


class UnsafeModelError(Exception):
    """A model version was refused: it is not deserialised, or not served.

    Args:
        kind: One of :data:`REFUSAL_KINDS`.
        reason: One human sentence, without local paths, hosts or URLs.

    Attributes:
        kind: The refusal's label.
        reason: Why the model was refused.
    """

    def __init__(self, kind: str, reason: str) -> None:
        if kind not in REFUSAL_KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}")
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """Reads a model directory's ``MLmodel`` file as plain data (``yaml.safe_load``).

    Args:
        model_dir: A downloaded MLflow model directory.

    Returns:
        The parsed file.

    Raises:
        UnsafeModelError: When the file is missing, too large or not a YAML mapping.
    """
    path = model_dir / MLMODEL_FILE
    if not path.is_file():
        raise UnsafeModelError("malformed", f"the model has no {MLMODEL_FILE} file")
    if path.stat().st_size > _MAX_MLMODEL_BYTES:
        raise UnsafeModelError("malformed", f"its {MLMODEL_FILE} file is larger than 1 MiB")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise UnsafeModelError("malformed", f"its {MLMODEL_FILE} file is not valid YAML") from None
    if not isinstance(document, dict):
        raise UnsafeModelError("malformed", f"its {MLMODEL_FILE} file is not a YAML mapping")
    return document


def skops_file(model_dir: Path, mlmodel: dict[str, Any]) -> Path:
    """Finds the model's skops file after checking its declared serialization format.

    Args:
        model_dir: The model directory.
        mlmodel: Its parsed ``MLmodel``.

    Returns:
        The path of the skops file, inside ``model_dir``.

    Raises:
        UnsafeModelError: When there is no ``sklearn`` flavor, its format is not skops
            (``pickle``, ``cloudpickle`` or anything else), or the file is outside the
            directory or missing.
    """
    flavors = mlmodel.get("flavors")
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    if not isinstance(flavor, dict):
        raise UnsafeModelError("format", "the model has no sklearn flavor")
    found = flavor.get("serialization_format")
    if found != ACCEPTED_FORMAT:
        raise UnsafeModelError(
            "format",
            f"serialization format {str(found)[:40]!r} is not accepted; only "
            f"{ACCEPTED_FORMAT!r} models are loaded (pickle would run code from the model file)",
        )
    name = flavor.get("pickled_model")
    root = model_dir.resolve()
    path = (root / name).resolve() if isinstance(name, str) and name else root
    if path == root or not path.is_relative_to(root) or not path.is_file():
        raise UnsafeModelError("malformed", "the sklearn flavor names no model file in the model")
    return path


def listed_extra_files(mlmodel: dict[str, Any]) -> tuple[str, ...]:
    """The extra files the sklearn flavor lists, after checking that each one is allowed.

    Args:
        mlmodel: A parsed ``MLmodel``.

    Returns:
        Their paths inside the model directory (members of :data:`ALLOWED_EXTRA_FILES`),
        empty when the flavor lists none.

    Raises:
        UnsafeModelError: When an entry is not an allowed path or one is listed twice.
    """
    flavors = mlmodel.get("flavors")
    flavor = flavors.get("sklearn") if isinstance(flavors, dict) else None
    listed = flavor.get("extra_files") if isinstance(flavor, dict) else None
    if listed is None or listed == []:
        return ()
    paths = (
        [entry.get("path") for entry in listed if isinstance(entry, dict)]
        if isinstance(listed, list)
        else []
    )
    if not paths or len(paths) != len(listed) or any(p not in ALLOWED_EXTRA_FILES for p in paths):
        shown = ", ".join(repr(str(p)[:60]) for p in paths[:3]) or "entries that are no paths"
        allowed = " and ".join(repr(p) for p in ALLOWED_EXTRA_FILES)
        raise UnsafeModelError(
            "malformed", f"the model lists extra files {shown}; only {allowed} are accepted"
        )
    if len(set(paths)) != len(paths):
        raise UnsafeModelError("malformed", "the model lists the same extra file twice")
    return tuple(str(p) for p in paths)


def _extra_file(model_dir: Path, member: str, name: str) -> Path:
    root = model_dir.resolve()
    path = (root / member).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise UnsafeModelError("malformed", f"the model lists {name} but lacks it")
    return path


def read_training_ranges(model_dir: Path, mlmodel: dict[str, Any]) -> TrainingRanges | None:
    """Reads the training ranges a model carries, if it lists them (nothing is deserialised).

    Args:
        model_dir: The model directory.
        mlmodel: Its parsed ``MLmodel``.

    Returns:
        The ranges, or None when the sklearn flavor does not list them (a model logged
        before training wrote them).

    Raises:
        UnsafeModelError: When the flavor lists a file that is not allowed, or the ranges
            file is missing, outside the directory, too large, not JSON, or not 13 finite
            ranges.
    """
    if RANGES_EXTRA_FILE not in listed_extra_files(mlmodel):
        return None
    path = _extra_file(model_dir, RANGES_EXTRA_FILE, TRAINING_RANGES_FILE)
    if path.stat().st_size > _MAX_RANGES_BYTES:
        raise UnsafeModelError("malformed", f"its {TRAINING_RANGES_FILE} is larger than 64 KiB")
    try:
        return TrainingRanges.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])[:80] or "the document"
        raise UnsafeModelError(
            "malformed",
            f"its {TRAINING_RANGES_FILE} is invalid ({exc.error_count()} error(s); "
            f"{where}: {first['msg'][:120]})",
        ) from None


def read_onnx_model(
    model_dir: Path, mlmodel: dict[str, Any], max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes | None:
    """Reads the bytes of the ONNX graph a model carries, if it lists one (not parsed here).

    Args:
        model_dir: The model directory.
        mlmodel: Its parsed ``MLmodel``.
        max_bytes: Largest size of the file.

    Returns:
        The file's bytes, or None when the sklearn flavor does not list it.

    Raises:
        UnsafeModelError: ``too_large`` when the file is larger than ``max_bytes``;
            ``malformed`` when it is listed but missing, empty or outside the directory, or
            another extra file is not allowed.
    """
    if ONNX_EXTRA_FILE not in listed_extra_files(mlmodel):
        return None
    path = _extra_file(model_dir, ONNX_EXTRA_FILE, ONNX_MODEL_FILE)
    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafeModelError(
            "too_large", f"its {ONNX_MODEL_FILE} has {size} bytes; at most {max_bytes}"
        )
    if size == 0:
        raise UnsafeModelError("malformed", f"its {ONNX_MODEL_FILE} is empty")
    return path.read_bytes()


def check_signature(mlmodel: dict[str, Any]) -> None:
    """Checks that the signature's inputs are the 13 wine features, in order.

    Args:
        mlmodel: A parsed ``MLmodel``.

    Raises:
        UnsafeModelError: When there is no signature or its inputs are other columns.
    """
    signature = mlmodel.get("signature")
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    if not isinstance(inputs, str):
        raise UnsafeModelError("signature", "the model has no input signature")
    try:
        columns = json.loads(inputs)
    except ValueError:
        raise UnsafeModelError("signature", "the model's input signature is not JSON") from None
    names = (
        [column.get("name") for column in columns if isinstance(column, dict)]
        if isinstance(columns, list)
        else []
    )
    if tuple(names) != FEATURE_NAMES:
        raise UnsafeModelError(
            "signature",
            f"the signature has {len(names)} input(s) that are not the "
            f"{len(FEATURE_NAMES)} wine features in order",
        )


def _untrusted(names: list[str]) -> UnsafeModelError:
    shown = ", ".join(repr(name[:100]) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return UnsafeModelError(
        "untrusted_types", f"the model file names untrusted types: {shown}{more}"
    )


def load_skops(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Deserialises a skops file, trusting only skops' defaults and :data:`TRUSTED_TYPES`.

    The types the file names are audited before anything is constructed.

    Args:
        path: The skops file.
        max_bytes: Largest total size of its unpacked content.

    Returns:
        The deserialised object.

    Raises:
        UnsafeModelError: When the file names any other type (the types are listed), is
            not a skops file, or unpacks to more than ``max_bytes``.
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
        if unpacked > max_bytes:
            raise UnsafeModelError(
                "too_large", f"the model file unpacks to {unpacked} bytes; at most {max_bytes}"
            )
        untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        if untrusted:
            raise _untrusted(untrusted)
        return skops.io.load(path, trusted=list(TRUSTED_TYPES))
    except UnsafeModelError:
        raise
    except UntrustedTypesFoundException as exc:  # the audit inside load() agrees; kept as a net
        raise _untrusted([str(exc)]) from None
    except Exception as exc:  # a damaged or hand-made file: zip, JSON or schema errors
        log.debug("skops file rejected", exc_info=True)
        raise UnsafeModelError(
            "malformed", f"the model file is not a readable skops file ({type(exc).__name__})"
        ) from None


def check_classes(estimator: Any) -> None:
    """Checks that an estimator is a fitted classifier of the three wine classes.

    Args:
        estimator: The deserialised object.

    Raises:
        UnsafeModelError: When it has no ``predict`` or its ``classes_`` are not 0, 1, 2.
    """
    classes = getattr(estimator, "classes_", None)
    if not callable(getattr(estimator, "predict", None)) or classes is None:
        raise UnsafeModelError("classes", "the model is not a fitted classifier")
    try:
        found = tuple(classes.tolist() if hasattr(classes, "tolist") else classes)
    except TypeError:
        found = ()
    if found != CLASS_IDS:
        raise UnsafeModelError(
            "classes",
            f"the model has {len(found)} class(es), not the wine classes "
            f"{', '.join(map(str, CLASS_IDS))}",
        )


@dataclass(frozen=True)
class ModelFiles:
    """What a model directory holds once checked and loaded.

    Attributes:
        estimator: The fitted scikit-learn classifier, or None when the caller preferred
            the ONNX graph and the model has one (the skops file is then not loaded).
        training_ranges: The feature ranges of its training split, or None when the model
            carries none (logged before training wrote them).
        onnx_model: The raw bytes of its ONNX graph, or None when it carries none (logged
            before training wrote it). Not parsed by this module.
    """

    estimator: Any
    training_ranges: TrainingRanges | None
    onnx_model: bytes | None = None


def _require_sklearn(what: str) -> None:
    """Raises a ``format`` refusal when the estimator cannot be loaded in this process."""
    try:
        import sklearn  # noqa: F401
        import skops.io  # noqa: F401
    except ImportError:
        raise UnsafeModelError(
            "format",
            f"{what} has no ONNX model and scikit-learn is not installed in this image: "
            "retrain it (training logs ONNX with every model)",
        ) from None


def load_model_files(
    model_dir: Path,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    prefer_onnx: bool = False,
    what: str = "the model",
) -> ModelFiles:
    """Loads a downloaded MLflow sklearn model, its training ranges and ONNX graph, checked.

    The checks that need no deserialisation (format, file, signature, extra files and the
    ranges, the ONNX file's size, declared types) all run before the skops file is loaded.

    Args:
        model_dir: The model directory (with ``MLmodel`` at its top).
        max_bytes: Largest unpacked size of the skops file, and largest ONNX file.
        prefer_onnx: When the model carries an ONNX graph, return it without loading the
            skops file (the estimator is then None, and neither skops nor scikit-learn is
            imported). Without one, the estimator is loaded as usual.
        what: How a refusal names the model (e.g. ``"version 3"``).

    Returns:
        The fitted classifier (unless skipped for the ONNX graph), its training ranges and
        its ONNX graph's bytes.

    Raises:
        UnsafeModelError: With the reason the model is refused; ``format`` when
            ``prefer_onnx`` is set, the model has no ONNX graph and scikit-learn or skops
            cannot be imported here.
    """
    mlmodel = read_mlmodel(model_dir)
    path = skops_file(model_dir, mlmodel)
    check_signature(mlmodel)
    ranges = read_training_ranges(model_dir, mlmodel)
    onnx_model = read_onnx_model(model_dir, mlmodel, max_bytes)
    if prefer_onnx and onnx_model is not None:
        return ModelFiles(None, ranges, onnx_model)
    if prefer_onnx:
        _require_sklearn(what)
    estimator = load_skops(path, max_bytes)
    check_classes(estimator)
    return ModelFiles(estimator, ranges, onnx_model)


def load_model_dir(model_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Loads a downloaded MLflow sklearn model after checking everything it claims.

    As :func:`load_model_files`, for callers that need the estimator only.

    Returns:
        The fitted scikit-learn classifier.

    Raises:
        UnsafeModelError: With the reason the model is refused.
    """
    return load_model_files(model_dir, max_bytes).estimator


class ArtifactListing(Protocol):
    """What :func:`check_artifacts_size` needs; MLflow's artifact repositories have it."""

    def list_artifacts(self, path: str) -> list[Any]:
        """The ``FileInfo`` entries (``path``, ``is_dir``, ``file_size``) directly under path."""


def check_artifacts_size(repository: ArtifactListing, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Adds up the sizes of every artifact of a model, walking directories, before download.

    Args:
        repository: An MLflow artifact repository of the model version.
        max_bytes: The largest total accepted.

    Returns:
        The total size in bytes.

    Raises:
        UnsafeModelError: When the total exceeds ``max_bytes``, a file's size is unknown,
            or the listing is unreasonably long.
    """
    total = 0
    seen = 0
    pending = [""]
    while pending:
        for entry in repository.list_artifacts(pending.pop()):
            seen += 1
            if seen > _MAX_LISTING_ENTRIES:
                raise UnsafeModelError(
                    "too_large", f"the model has more than {_MAX_LISTING_ENTRIES} files"
                )
            if entry.is_dir:
                pending.append(entry.path)
                continue
            if entry.file_size is None:
                raise UnsafeModelError("too_large", "the size of a model file is unknown")
            total += int(entry.file_size)
            if total > max_bytes:
                raise UnsafeModelError(
                    "too_large",
                    f"the model's files are larger than the limit of {max_bytes} bytes",
                )
    return total


def load_model_version(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    version: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """The estimator of one registered version (:func:`load_version_files`, estimator only).

    The estimator is always loaded (no ``prefer_onnx``): this is for callers that need it.

    Raises:
        UnsafeModelError: When the version is refused.
        mlflow.exceptions.MlflowException: When the registry or the download fails.
    """
    return load_version_files(client, tracking_uri, name, version, max_bytes).estimator


def load_version_files(
    client: MlflowClient,
    tracking_uri: str,
    name: str,
    version: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    prefer_onnx: bool = False,
) -> ModelFiles:
    """Downloads one registered version into a temporary folder and loads it safely.

    Nothing global is changed: the tracking URI is passed to the artifact repository.

    Args:
        client: An MLflow client of the registry.
        tracking_uri: The tracking server that proxies the artifacts.
        name: The registered model.
        version: The version number.
        max_bytes: Largest total size of the version's artifacts.
        prefer_onnx: As for :func:`load_model_files`: with an ONNX graph, the skops file is
            not loaded (estimator None).

    Returns:
        The fitted scikit-learn classifier, the training ranges and the ONNX graph's bytes
        logged with it.

    Raises:
        UnsafeModelError: When the version is refused (too large, not skops, untrusted
            types, wrong signature, classes, ranges or ONNX file, or no ONNX graph and no
            scikit-learn here when ``prefer_onnx`` is set).
        mlflow.exceptions.MlflowException: When the registry or the download fails.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    uri = client.get_model_version_download_uri(name, version)
    repository = get_artifact_repository(uri, tracking_uri=tracking_uri)
    check_artifacts_size(repository, max_bytes)
    with tempfile.TemporaryDirectory(prefix="wine-model-") as tmp:
        local = Path(repository.download_artifacts("", dst_path=tmp))
        return load_model_files(
            local, max_bytes, prefer_onnx=prefer_onnx, what=f"version {version}"
        )
