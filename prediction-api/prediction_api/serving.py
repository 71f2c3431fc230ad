"""The served model and its lifecycle: initial load, registry watcher, atomic hot swap.

The request path only reads :attr:`ModelStore.current`, one attribute holding an immutable
:class:`ServedModel`; the watcher thread loads a new version beside the old one, checks it,
and replaces that attribute in one assignment. A request therefore always uses one complete
model, never waits for a load, and never talks to MLflow.

A version that carries an ONNX file (``extra_files/model.onnx``, logged by training) is
served by onnxruntime (:class:`OnnxClassifier`); one without it by its scikit-learn
estimator, which needs scikit-learn installed (the API image has none: such a version is
refused there, and the model served before keeps serving).
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

import numpy as np

from prediction_api.ranges import RangeCheck
from wine_mlops.features import CLASS_IDS, FEATURE_NAMES, class_name
from wine_mlops.model_files import ModelFiles, UnsafeModelError
from wine_mlops.training_ranges import TrainingRanges

log = logging.getLogger(__name__)

#: What serves a version: onnxruntime (its ONNX file) or scikit-learn (its skops estimator).
Runtime = Literal["onnx", "sklearn"]
RUNTIME_ONNX: Final[Runtime] = "onnx"
RUNTIME_SKLEARN: Final[Runtime] = "sklearn"

#: The ONNX graph's names, as training writes them (skl2onnx, no ZipMap).
ONNX_INPUT: Final = "input"
ONNX_LABEL: Final = "label"
ONNX_PROBABILITIES: Final = "probabilities"


class ModelLoadError(UnsafeModelError):
    """A loaded version is not a wine classifier the API can serve: it is refused.

    Args:
        reason: One human sentence (no local paths, hosts or exception text).
    """

    def __init__(self, reason: str) -> None:
        super().__init__("invalid", reason)


class OnnxClassifier:
    """A wine classifier run by onnxruntime, shaped like the scikit-learn one it replaces.

    Build it with :func:`load_onnx_classifier`, which checks the graph first.

    Args:
        session: The onnxruntime session of the model.
        class_ids: The class of each ``probabilities`` column (from the model's metadata).

    Attributes:
        classes_: The class ids, in the column order of :meth:`predict_proba`.
        n_features_in_: The number of input columns (13).
        feature_names_in_: The features, in input column order (from the metadata).
    """

    def __init__(self, session: Any, class_ids: tuple[int, ...]) -> None:
        self._session = session
        self.classes_ = np.asarray(class_ids, dtype=np.int64)
        self.n_features_in_ = len(FEATURE_NAMES)
        self.feature_names_in_ = np.asarray(FEATURE_NAMES, dtype=object)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of each row, columns in :attr:`classes_` order (float32).

        Args:
            rows: Wines, one per row, features in :data:`FEATURE_NAMES` order.
        """
        # One conversion per request: the graph takes a C-contiguous float32 matrix.
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        (probabilities,) = self._session.run([ONNX_PROBABILITIES], {ONNX_INPUT: matrix})
        return np.asarray(probabilities)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The most probable class id of each row."""
        return np.asarray(self.classes_[self.predict_proba(rows).argmax(axis=1)])


def _session_options() -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # One thread per session, run sequentially: the API answers one small request at a time
    # per process on a 2-core box, and parallelism comes from processes (containers or
    # workers), not from threads inside one inference, which would only contend for cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def load_onnx_classifier(model: bytes) -> OnnxClassifier:
    """Builds an onnxruntime session from a version's ONNX file and checks its contract.

    The graph must take one input ``input``, float, of 13 columns; give the outputs
    ``label`` and ``probabilities``; and carry the metadata ``class_ids`` (``0,1,2``) and
    ``feature_names`` (the 13 wine features, in order, comma-joined).

    Args:
        model: The ONNX file's bytes.

    Returns:
        The classifier (the test row is run by :func:`build_served_model`).

    Raises:
        UnsafeModelError: ``malformed`` when onnxruntime cannot read the file,
            ``signature`` when its input, outputs or feature names differ, ``classes``
            when its classes are not the wine classes.
    """
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(
            model, sess_options=_session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # damaged or hand-made bytes: onnxruntime's own errors
        raise UnsafeModelError(
            "malformed", f"the ONNX file is not a model onnxruntime can read ({type(exc).__name__})"
        ) from exc
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if (
        len(inputs) != 1
        or inputs[0].name != ONNX_INPUT
        or inputs[0].type != "tensor(float)"
        or len(shape) != 2
        or shape[1] != len(FEATURE_NAMES)
    ):
        found = ", ".join(f"{i.name} {i.type} {list(i.shape)}" for i in inputs[:3])[:200]
        raise UnsafeModelError(
            "signature",
            f"the ONNX model takes {found or 'no input'}, not one float32 input "
            f"{ONNX_INPUT!r} of {len(FEATURE_NAMES)} columns",
        )
    outputs = {output.name for output in session.get_outputs()}
    if not {ONNX_LABEL, ONNX_PROBABILITIES} <= outputs:
        raise UnsafeModelError(
            "signature",
            f"the ONNX model's outputs are not {ONNX_LABEL!r} and {ONNX_PROBABILITIES!r}",
        )
    metadata = session.get_modelmeta().custom_metadata_map
    names = tuple(metadata.get("feature_names", "").split(","))
    if names != FEATURE_NAMES:
        raise UnsafeModelError(
            "signature",
            "the ONNX model's feature_names metadata is not the "
            f"{len(FEATURE_NAMES)} wine features in order",
        )
    try:
        class_ids = tuple(int(c) for c in metadata.get("class_ids", "").split(","))
    except ValueError:
        class_ids = ()
    if class_ids != CLASS_IDS:
        raise UnsafeModelError(
            "classes",
            f"the ONNX model's class_ids metadata is not the wine classes "
            f"{', '.join(map(str, CLASS_IDS))}",
        )
    return OnnxClassifier(session, class_ids)


@dataclass(frozen=True)
class VersionRef:
    """A registry model version an alias points to.

    Attributes:
        name: Registered model name.
        version: Version number, as MLflow gives it (a string).
        alias: The alias it was found under.
        run_id: The run that logged it, if any.
        tags: The version's tags (``model_family`` and the promotion facts).
        source: The model URI to load it from.
    """

    name: str
    version: str
    alias: str
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    source: str = ""


class ModelSource(Protocol):
    """Where models come from: the MLflow registry in production."""

    def lookup(self) -> VersionRef | None:
        """The version the served alias points to now, or None when the alias is unset."""

    def load(self, ref: VersionRef) -> Any:
        """Downloads one version and reads its ONNX file or deserialises its estimator.

        Returns:
            A :class:`~wine_mlops.model_files.ModelFiles` (the ONNX file's bytes, or the
            scikit-learn estimator of a version without one, and the training ranges logged
            with it), or the bare estimator of a version without ranges.

        Raises:
            UnsafeModelError: When the version is refused (it will not be tried again).
            Exception: Any other failure (e.g. a download) is retried at the next check.
        """

    def run_metrics(self, ref: VersionRef) -> dict[str, float]:
        """The test metrics of the run that logged a version (empty without a run).

        Raises:
            Exception: A failure to read them fails the load, retried at the next check.
        """


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and what the API reports about it. Immutable once built.

    Attributes:
        estimator: The fitted scikit-learn classifier (or pipeline), or the
            :class:`OnnxClassifier` of its ONNX file.
        ref: The registry version it came from.
        class_ids: The estimator's classes, in the column order of ``predict_proba``.
        class_labels: The human label of each of those classes.
        loaded_at: When this process loaded it.
        metrics: The test metrics of the run that logged it, read once when it was loaded.
        ranges: The training ranges logged with it, or None (its answers never warn).
        runtime: What runs it: :data:`RUNTIME_ONNX` or :data:`RUNTIME_SKLEARN`.
    """

    estimator: Any
    ref: VersionRef
    class_ids: tuple[int, ...]
    class_labels: tuple[str, ...]
    loaded_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    ranges: RangeCheck | None = None
    runtime: Runtime = RUNTIME_SKLEARN

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities of each row (columns in :attr:`class_ids` order)."""
        if hasattr(self.estimator, "predict_proba"):
            return np.asarray(self.estimator.predict_proba(rows), dtype=np.float64)
        predicted = np.asarray(self.estimator.predict(rows))
        return (predicted[:, None] == np.asarray(self.class_ids)[None, :]).astype(np.float64)


def build_served_model(
    estimator: Any,
    ref: VersionRef,
    class_names: tuple[str, ...],
    metrics: dict[str, float] | None = None,
    ranges: TrainingRanges | None = None,
) -> ServedModel:
    """Checks that an estimator is a wine classifier the API can serve, and wraps it.

    Args:
        estimator: The deserialised estimator, or the :class:`OnnxClassifier` of the
            version's ONNX file.
        ref: Where it came from.
        class_names: Labels of class ids 0, 1, 2, ….
        metrics: The test metrics of its run.
        ranges: The training ranges logged with it, if any.

    Returns:
        The model, ready to serve.

    Raises:
        ModelLoadError: When it lacks ``predict``, expects other features or fails on a row.
    """
    if not hasattr(estimator, "predict") or not hasattr(estimator, "classes_"):
        raise ModelLoadError(f"{ref.source} is not a fitted classifier ({type(estimator)})")
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None and tuple(names) != FEATURE_NAMES:
        raise ModelLoadError(
            f"{ref.source} expects features {list(names)}, not the API's {list(FEATURE_NAMES)}"
        )
    if getattr(estimator, "n_features_in_", len(FEATURE_NAMES)) != len(FEATURE_NAMES):
        raise ModelLoadError(f"{ref.source} expects {estimator.n_features_in_} features, not 13")
    # Models are fitted on frames with named columns; the API passes NumPy arrays, whose column
    # order was just checked against the model's own feature names: the warning is moot.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    class_ids = tuple(int(c) for c in estimator.classes_)
    labels = tuple(class_name(c, class_names) for c in class_ids)
    served = ServedModel(
        estimator,
        ref,
        class_ids,
        labels,
        datetime.now(UTC),
        dict(metrics or {}),
        RangeCheck.of(ranges) if ranges is not None else None,
        RUNTIME_ONNX if isinstance(estimator, OnnxClassifier) else RUNTIME_SKLEARN,
    )
    try:  # a model that cannot answer one row is never swapped in
        probabilities = served.predict_proba(np.ones((1, len(FEATURE_NAMES))))
    except Exception as exc:
        raise ModelLoadError(f"{ref.source} fails on a test row ({type(exc).__name__})") from exc
    if probabilities.shape != (1, len(class_ids)):
        raise ModelLoadError(f"{ref.source} returns probabilities of shape {probabilities.shape}")
    return served


@dataclass(frozen=True)
class Refusal:
    """A version the alias points to that was refused, and why.

    Attributes:
        ref: The refused version.
        kind: A short label, one of :data:`wine_mlops.model_files.REFUSAL_KINDS`.
        reason: One human sentence, fit for clients (no paths, hosts or exception text).
    """

    ref: VersionRef
    kind: str
    reason: str


class LoadListener(Protocol):
    """Told about every load attempt and every registry look-up failure (the metrics)."""

    def model_loaded(self, served: ServedModel, kind: str) -> None:
        """A model was swapped in; ``kind`` is ``initial`` or ``reload``."""

    def model_load_failed(self, ref: VersionRef, kind: str) -> None:
        """Loading ``ref`` failed; the previous model (if any) keeps serving."""

    def model_refused(self, refusal: Refusal) -> None:
        """A version was refused (told once per version, after ``model_load_failed``)."""

    def registry_check_failed(self) -> None:
        """The alias could not be looked up (MLflow unreachable or erroring)."""


def _model_of(loaded: Any) -> tuple[Any, TrainingRanges | None]:
    """What serves a loaded version (its ONNX file when it has one), and its ranges."""
    if not isinstance(loaded, ModelFiles):
        return loaded, None  # a bare estimator
    if loaded.onnx_model is not None:
        return load_onnx_classifier(loaded.onnx_model), loaded.training_ranges
    return loaded.estimator, loaded.training_ranges


def _same(a: VersionRef, b: VersionRef) -> bool:
    return (a.name, a.version) == (b.name, b.version)


class ModelStore:
    """Holds the served model and keeps it in step with the registry alias.

    A version that is refused (:class:`~wine_mlops.model_files.UnsafeModelError`) is logged
    and counted once, then skipped at every later check until the alias points elsewhere;
    the model served before it keeps serving. Other load failures (e.g. a download) are
    retried at each check.

    Attributes:
        last_error: What went wrong last, in full (for the log and operators), or None.
        public_error: The same without internal details (no hosts, URLs or exception
            text): what clients may be told, or None.

    Args:
        source: Where versions are looked up and loaded from.
        class_names: Labels of the class ids.
        listener: Told about loads (for metrics); optional.
    """

    def __init__(
        self,
        source: ModelSource,
        class_names: tuple[str, ...],
        listener: LoadListener | None = None,
    ) -> None:
        self._source = source
        self._class_names = class_names
        self._listener = listener
        self._current: ServedModel | None = None
        self._refused: Refusal | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.public_error: str | None = None

    @property
    def current(self) -> ServedModel | None:
        """The model serving right now, or None before the first successful load."""
        return self._current

    @property
    def refused(self) -> Refusal | None:
        """The version the alias points to if it was refused, else None."""
        return self._refused

    def _fail(self, detail: str, public: str) -> None:
        self.last_error = detail
        self.public_error = public

    def refresh(self) -> bool:
        """Looks up the alias once and swaps in its version if it is new.

        Never raises: a look-up or load failure is logged, counted and leaves the current
        model serving.

        Returns:
            True when the look-up succeeded (whether or not anything changed).
        """
        with self._refresh_lock:
            current = self._current
            try:
                ref = self._source.lookup()
            except Exception as exc:
                self._fail(
                    f"registry look-up failed: {type(exc).__name__}: {exc}",
                    "the model registry cannot be reached",
                )
                log.warning(
                    "%s; %s",
                    self.last_error,
                    f"still serving version {current.ref.version}" if current else "no model yet",
                )
                if self._listener:
                    self._listener.registry_check_failed()
                return False
            if self._refused is not None and (ref is None or not _same(ref, self._refused.ref)):
                self._refused = None  # the alias moved on: that version may be tried again
            if ref is None:
                unset = "the alias is not set in the registry (no model trained yet?)"
                self._fail(unset, unset)
                if current is None:
                    log.info("no model to serve yet: %s", self.last_error)
                return True
            if current is not None and _same(current.ref, ref):
                self.last_error = self.public_error = None
                return True
            if self._refused is not None:
                return True  # refused before: logged and counted once, not tried again
            self._load(ref, current)
            return True

    def _load(self, ref: VersionRef, current: ServedModel | None) -> None:
        kind = "initial" if current is None else "reload"
        log.info("loading %s version %s (%s)", ref.name, ref.version, ref.source)
        started = time.perf_counter()
        still = f"version {current.ref.version} keeps serving" if current else "no model yet"
        try:
            loaded = self._source.load(ref)
            model, ranges = _model_of(loaded)
            metrics = self._source.run_metrics(ref)
            served = build_served_model(model, ref, self._class_names, metrics, ranges)
        except UnsafeModelError as exc:
            self._refuse(Refusal(ref, exc.kind, exc.reason), exc, kind, still)
            return
        except Exception as exc:
            self._fail(
                f"loading version {ref.version} failed: {exc}",
                f"loading version {ref.version} failed",
            )
            log.exception("%s; %s", self.last_error, still)
            if self._listener:
                self._listener.model_load_failed(ref, kind)
            return
        self._current = served  # the atomic swap: one reference assignment
        self.last_error = self.public_error = None
        log.info(
            "now serving %s version %s (run %s), loaded in %.2f s%s",
            ref.name,
            ref.version,
            ref.run_id,
            time.perf_counter() - started,
            f", replacing version {current.ref.version}" if current else "",
        )
        if self._listener:
            self._listener.model_loaded(served, kind)

    def _refuse(self, refusal: Refusal, exc: Exception, kind: str, still: str) -> None:
        cause = exc.__cause__
        detail = f" ({cause!r})" if cause is not None else ""  # repr: one log line
        self._refused = refusal
        self._fail(
            f"version {refusal.ref.version} refused: {refusal.reason}{detail}",
            f"version {refusal.ref.version} was refused: {refusal.reason}",
        )
        log.warning(
            "refused %s version %s [%s]: %s%s; %s",
            refusal.ref.name,
            refusal.ref.version,
            refusal.kind,
            refusal.reason,
            detail,
            still,
        )
        if self._listener:
            self._listener.model_load_failed(refusal.ref, kind)
            self._listener.model_refused(refusal)

    def watch(
        self,
        interval: float,
        startup_attempts: int = 8,
        max_backoff: float = 8.0,
    ) -> None:
        """Runs the watcher loop until :meth:`stop` (the body of the watcher thread).

        Until a model is loaded, it retries with exponential backoff (0.5 s doubling up to
        ``max_backoff``) for ``startup_attempts`` attempts, then every ``interval`` seconds;
        once a model serves, it checks the alias every ``interval`` seconds.

        Args:
            interval: Seconds between two look-ups of the alias.
            startup_attempts: Quick attempts before falling back to ``interval``.
            max_backoff: Longest pause between two quick attempts.
        """
        delay = 0.5
        attempt = 0
        while not self._stop.is_set():
            self.refresh()
            if self._current is not None:
                pause = interval
            else:
                attempt += 1
                if attempt < startup_attempts:
                    pause = min(delay, interval)
                    delay = min(delay * 2, max_backoff)
                else:
                    if attempt == startup_attempts:
                        log.error(
                            "no model after %d attempts (%s); checking every %.0f s",
                            attempt,
                            self.last_error,
                            interval,
                        )
                    pause = interval
            self._stop.wait(pause)

    def start(self, interval: float, startup_attempts: int = 8, max_backoff: float = 8.0) -> None:
        """Starts the watcher in a daemon thread (first load included)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.watch,
            args=(interval, startup_attempts, max_backoff),
            name="model-watcher",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the watcher thread (a look-up in progress may finish in the background)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
