"""Real model directories for the safe-loading tests: good ones and booby-trapped ones.

Each trap creates a marker file when it is loaded the way ``mlflow.sklearn.load_model``
loads it (the format and the trusted types taken from the model's own ``MLmodel``), so a
test can show both that the trap is live and that our loader never springs it.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from wine_mlops.features import FEATURE_NAMES

#: An MLflow signature whose inputs are the 13 wine features (as training logs it).
WINE_SIGNATURE: dict[str, Any] = {
    "inputs": json.dumps([{"type": "double", "name": n, "required": True} for n in FEATURE_NAMES]),
    "outputs": json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]),
    "params": None,
}


class CommandOnUnpickle:
    """Unpickling this object runs ``touch marker`` through the shell (``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


class SkopsTrap:
    """skops calls ``__setstate__`` when it constructs this object: that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


#: What skops calls the trap's type: an attacker lists it in ``skops_trusted_types``.
SKOPS_TRAP_TYPE = f"{SkopsTrap.__module__}.{SkopsTrap.__qualname__}"


def write_mlmodel(
    model_dir: Path,
    serialization_format: str,
    model_file: str,
    trusted: list[str] | None = None,
    signature: dict[str, Any] | None = WINE_SIGNATURE,
) -> Path:
    """Writes an ``MLmodel`` file like the one ``mlflow.sklearn.log_model`` writes.

    Args:
        model_dir: The model directory (created if needed).
        serialization_format: What the sklearn flavor declares.
        model_file: The serialised model's file name.
        trusted: The ``skops_trusted_types`` the file declares.
        signature: The signature; the wine features by default, None for none.

    Returns:
        The model directory.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "artifact_path": "model",
        "flavors": {
            "python_function": {
                "loader_module": "mlflow.sklearn",
                "model_path": model_file,
                "predict_fn": "predict",
                "python_version": "3.11.7",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            },
            "sklearn": {
                "code": None,
                "pickled_model": model_file,
                "serialization_format": serialization_format,
                "sklearn_version": "1.9.1",
                "skops_trusted_types": trusted,
            },
        },
        "mlflow_version": "3.17.2",
    }
    if signature is not None:
        document["signature"] = signature
    (model_dir / "MLmodel").write_text(yaml.safe_dump(document))
    return model_dir


def pickle_trap_dir(model_dir: Path, marker: Path, serialization_format: str = "pickle") -> Path:
    """A model whose ``model.pkl`` runs a shell command when unpickled."""
    (write_mlmodel(model_dir, serialization_format, "model.pkl") / "model.pkl").write_bytes(
        pickle.dumps(CommandOnUnpickle(marker))
    )
    return model_dir


def skops_trap_dir(model_dir: Path, marker: Path) -> Path:
    """A skops model whose object creates ``marker`` on load, its type listed as trusted."""
    import skops.io

    write_mlmodel(model_dir, "skops", "model.skops", trusted=[SKOPS_TRAP_TYPE])
    skops.io.dump(SkopsTrap(marker), model_dir / "model.skops")
    return model_dir


def save_good_model(
    model: Any, model_dir: Path, features: pd.DataFrame, ranges_file: Path | None = None
) -> Path:
    """Saves a fitted estimator as training logs it (skops, our trusted types, a signature).

    Args:
        model: A fitted classifier.
        model_dir: Where to save it (must not exist).
        features: Rows of the frame it was fitted on, for the signature.
        ranges_file: A training ranges file to log among its extra files, as training does.

    Returns:
        The model directory.
    """
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from wine_mlops.model_files import TRUSTED_TYPES

    mlflow.sklearn.save_model(
        model,
        str(model_dir),
        signature=infer_signature(features, model.predict(features)),
        skops_trusted_types=list(TRUSTED_TYPES),
        pip_requirements=["scikit-learn", "skops"],  # no inference: it would load the model
        extra_files=[str(ranges_file)] if ranges_file is not None else None,
    )
    return model_dir


def rename_skops_root(path: Path, module: str, name: str) -> None:
    """Rewrites a skops file's ``schema.json`` so that its root object has another type."""
    with zipfile.ZipFile(path) as archive:
        members = {member: archive.read(member) for member in archive.namelist()}
    schema = json.loads(members["schema.json"])
    schema["__module__"], schema["__class__"] = module, name
    members["schema.json"] = json.dumps(schema).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    path.write_bytes(buffer.getvalue())
