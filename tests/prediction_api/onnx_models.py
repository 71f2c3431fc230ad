"""Real ONNX files and model directories as training writes them, good ones and damaged ones.

The ONNX files are converted with skl2onnx the way training converts its candidates: one
float input ``input`` of 13 columns, the outputs ``label`` and ``probabilities`` (no
ZipMap), and the metadata ``class_ids`` and ``feature_names``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from wine_mlops.features import CLASS_IDS, FEATURE_NAMES
from wine_mlops.training_ranges import TRAINING_RANGES_FILE, TrainingRanges

#: The file name of a version's ONNX file among its extra files.
ONNX_FILE = "model.onnx"


def onnx_bytes(
    model: Any,
    width: int = len(FEATURE_NAMES),
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Converts a fitted classifier to ONNX as training does.

    Args:
        model: A fitted scikit-learn classifier (or pipeline).
        width: The number of input columns declared (13 for a wine model).
        metadata: The custom metadata; by default the wine classes and features.

    Returns:
        The serialised ONNX model.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    converted = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, width]))],
        options={"zipmap": False},
    )
    if metadata is None:
        metadata = {
            "class_ids": ",".join(map(str, CLASS_IDS)),
            "feature_names": ",".join(FEATURE_NAMES),
        }
    for key, value in metadata.items():
        entry = converted.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = converted.SerializeToString()
    return data


def save_model_dir(
    model: Any, model_dir: Path, features: pd.DataFrame, onnx_model: bytes | None
) -> Path:
    """Saves a fitted classifier as training logs it: skops, its training ranges and,
    unless ``onnx_model`` is None, its ONNX file, both listed among its extra files.

    Args:
        model: A fitted classifier.
        model_dir: Where to save it (must not exist).
        features: The frame it was fitted on (the signature and the ranges).
        onnx_model: The ONNX file's bytes, or None for a version without one.

    Returns:
        The model directory.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from wine_mlops.model_files import TRUSTED_TYPES

    extras = model_dir.parent / f"{model_dir.name}-extras"
    extras.mkdir(parents=True)
    ranges = extras / TRAINING_RANGES_FILE
    ranges.write_text(TrainingRanges.of(features).model_dump_json())
    extra_files = [str(ranges)]
    if onnx_model is not None:
        (extras / ONNX_FILE).write_bytes(onnx_model)
        extra_files.append(str(extras / ONNX_FILE))
    mlflow.sklearn.save_model(
        model,
        str(model_dir),
        signature=infer_signature(features.head(5), model.predict(features.head(5))),
        skops_trusted_types=list(TRUSTED_TYPES),
        pip_requirements=["scikit-learn", "skops", "onnxruntime"],  # no inference
        extra_files=extra_files,
    )
    return model_dir
