"""Every trained candidate as ONNX: conversion with skl2onnx, then a parity check.

The prediction API runs a version's ONNX graph with onnxruntime (about a thousand times
faster than scikit-learn on one row). The graph is logged with the model, as one of the
sklearn flavor's extra files (``extra_files/model.onnx``), and only after it answered like
the estimator on every row of the session's data set. The contract the API relies on:

- one input, ``input``: float32, shape ``[N, 13]``, the features in
  :data:`~wine_mlops.features.FEATURE_NAMES` order (float32 because float64 breaks the tree
  models' converters and GradientBoosting's);
- two outputs, no ZipMap: ``label`` (int64 ``[N]``, the class id) and ``probabilities``
  (float32 ``[N, 3]``, one column per class, in ``estimator.classes_`` order: 0, 1, 2);
- metadata: ``class_ids`` (``"0,1,2"``) and ``feature_names`` (the 13 names, comma-joined).

A candidate whose graph cannot be built, or whose answers differ from the estimator's
(any label, or a probability by more than :data:`PARITY_TOLERANCE`), is not registered.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from wine_mlops.features import FEATURE_NAMES

#: The graph's input and outputs (skl2onnx's classifier outputs without ZipMap).
INPUT_NAME: Final = "input"
LABEL_OUTPUT: Final = "label"
PROBABILITIES_OUTPUT: Final = "probabilities"
#: The metadata keys the API checks.
CLASS_IDS_KEY: Final = "class_ids"
FEATURE_NAMES_KEY: Final = "feature_names"
#: Largest accepted difference between an ONNX probability and the estimator's.
PARITY_TOLERANCE: Final = 1e-5

#: DummyClassifier strategies whose answer does not depend on chance (the converter's).
_CONSTANT_STRATEGIES: Final = ("most_frequent", "prior")


class ConversionError(Exception):
    """A fitted candidate could not be converted to ONNX; the message says why."""


@dataclass(frozen=True)
class Parity:
    """How an ONNX graph's answers compare with its estimator's on the same rows.

    Attributes:
        rows: How many rows were compared.
        max_abs_diff: Largest absolute difference of a probability.
        label_mismatches: Rows whose predicted class differs.
    """

    rows: int
    max_abs_diff: float
    label_mismatches: int

    @property
    def passed(self) -> bool:
        """Whether every label agrees and every probability is within the tolerance."""
        return self.label_mismatches == 0 and self.max_abs_diff <= PARITY_TOLERANCE

    def failure(self) -> str:
        """Why the check failed, in words (empty when it passed)."""
        reasons = []
        if self.label_mismatches:
            reasons.append(f"{self.label_mismatches} of {self.rows} labels differ")
        if not self.max_abs_diff <= PARITY_TOLERANCE:  # also true for NaN
            reasons.append(
                f"probabilities differ by up to {self.max_abs_diff:.3g} "
                f"(tolerance {PARITY_TOLERANCE:g})"
            )
        return "; ".join(reasons)


def _dummy_shape_calculator(operator: Any) -> None:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    rows = operator.inputs[0].get_first_dimension()
    classes = len(operator.raw_operator.classes_)
    operator.outputs[0].type = Int64TensorType([rows])
    operator.outputs[1].type = FloatTensorType([rows, classes])


def _dummy_converter(scope: Any, operator: Any, container: Any) -> None:
    """A constant answer per row: the class prior (``prior``) or its one-hot (``most_frequent``).

    The graph takes the number of rows from the input's shape and repeats the constant
    label and probability row that many times (``Expand``).
    """
    from onnx import TensorProto

    model: DummyClassifier = operator.raw_operator
    if model.strategy not in _CONSTANT_STRATEGIES or getattr(model, "n_outputs_", 1) != 1:
        raise ConversionError(
            f"DummyClassifier(strategy={model.strategy!r}) has no ONNX converter; only "
            f"{' and '.join(_CONSTANT_STRATEGIES)} with one output convert"
        )
    prior = np.asarray(model.class_prior_, dtype=np.float64)
    best = int(np.argmax(prior))
    row = prior if model.strategy == "prior" else np.eye(len(prior))[best]
    label = int(model.classes_[best])

    def name(hint: str) -> str:
        return str(scope.get_unique_variable_name(hint))

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> None:
        container.add_node(op, inputs, [output], name=scope.get_unique_operator_name(op), **attrs)

    shape, rows = name("shape"), name("rows")
    node("Shape", [operator.inputs[0].full_name], shape)
    starts, ends = name("starts"), name("ends")
    container.add_initializer(starts, TensorProto.INT64, [1], [0])
    container.add_initializer(ends, TensorProto.INT64, [1], [1])
    node("Slice", [shape, starts, ends], rows)  # [N]

    width, matrix = name("width"), name("matrix_shape")
    container.add_initializer(width, TensorProto.INT64, [1], [len(row)])
    node("Concat", [rows, width], matrix, axis=0)  # [N, classes]
    probabilities = name("prior")
    container.add_initializer(probabilities, TensorProto.FLOAT, [1, len(row)], row.tolist())
    node("Expand", [probabilities, matrix], operator.outputs[1].full_name)

    constant = name("label")
    container.add_initializer(constant, TensorProto.INT64, [1], [label])
    node("Expand", [constant, rows], operator.outputs[0].full_name)


@functools.cache
def register_converters() -> None:
    """Registers the converters skl2onnx lacks: :class:`~sklearn.dummy.DummyClassifier`."""
    from skl2onnx import update_registered_converter

    update_registered_converter(
        DummyClassifier,
        "WineDummyClassifier",
        _dummy_shape_calculator,
        _dummy_converter,
        options={"zipmap": [False, True], "nocl": [False, True]},
    )


def to_onnx(model: Any) -> bytes:
    """Converts a fitted candidate to the ONNX graph the API serves (see the module's contract).

    Args:
        model: A fitted classifier (or pipeline) of the 13 wine features.

    Returns:
        The serialised ONNX model, with its ``class_ids`` and ``feature_names`` metadata.

    Raises:
        ConversionError: When skl2onnx cannot convert it (the message names the cause).
    """
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    register_converters()
    try:
        with warnings.catch_warnings():
            # skl2onnx's SVC converter reads these attributes, deprecated in scikit-learn 1.9
            warnings.filterwarnings(
                "ignore",
                message=r"Attribute `prob[AB]_` was deprecated",
                category=FutureWarning,
            )
            graph = convert_sklearn(
                model,
                initial_types=[(INPUT_NAME, FloatTensorType([None, len(FEATURE_NAMES)]))],
                options={id(model): {"zipmap": False}},
            )
    except ConversionError:
        raise
    except Exception as exc:  # skl2onnx's own errors: no converter, unsupported options
        first = " ".join(str(exc).split())[:200]
        kind = type(exc).__name__
        raise ConversionError(f"skl2onnx cannot convert it ({kind}: {first})") from exc
    outputs = [output.name for output in graph.graph.output]
    if outputs != [LABEL_OUTPUT, PROBABILITIES_OUTPUT]:
        raise ConversionError(f"the graph's outputs are {outputs}, not label and probabilities")
    onnx.helper.set_model_props(
        graph,
        {
            CLASS_IDS_KEY: ",".join(str(int(c)) for c in model.classes_),
            FEATURE_NAMES_KEY: ",".join(FEATURE_NAMES),
        },
    )
    return bytes(graph.SerializeToString())


def run_onnx(model: bytes, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Runs an ONNX graph with onnxruntime, one thread, as the API does.

    Args:
        model: The serialised graph.
        features: Rows with the 13 features, in model order.

    Returns:
        The labels and the probabilities.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rows = features[list(FEATURE_NAMES)].to_numpy(dtype=np.float32)
    labels, probabilities = session.run([LABEL_OUTPUT, PROBABILITIES_OUTPUT], {INPUT_NAME: rows})
    return np.asarray(labels), np.asarray(probabilities)


def check_parity(model: bytes, estimator: Any, features: pd.DataFrame) -> Parity:
    """Compares the ONNX graph's answers with the estimator's on the same rows.

    Args:
        model: The serialised graph.
        estimator: The fitted classifier it was converted from.
        features: The rows to compare on (the whole data set the session trained on).

    Returns:
        The largest probability difference and the number of differing labels.
    """
    labels, probabilities = run_onnx(model, features)
    expected = estimator.predict(features)
    expected_probabilities = estimator.predict_proba(features)
    if probabilities.shape != expected_probabilities.shape or labels.shape != expected.shape:
        return Parity(len(features), float("nan"), len(features))
    difference = np.abs(probabilities.astype(np.float64) - expected_probabilities)
    return Parity(
        rows=len(features),
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        label_mismatches=int((labels != expected).sum()),
    )
