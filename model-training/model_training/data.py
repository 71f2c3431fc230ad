"""Loading and validating the training data (scikit-learn's wine set or a CSV)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wine_mlops.features import CLASS_IDS, FEATURE_NAMES, TARGET, load_wine_frame

#: Fewest rows a class may have: enough for a stratified split and k-fold CV.
MIN_ROWS_PER_CLASS = 10


class DataValidationError(ValueError):
    """A dataset was rejected; ``problems`` names each thing wrong with it."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source} is not a valid wine dataset:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class Dataset:
    """A validated dataset: features in schema order and integer class ids."""

    features: pd.DataFrame
    target: pd.Series
    source: str

    @functools.cached_property
    def digest(self) -> str:
        """A short SHA-256 of the content, so runs on the same data can be grouped."""
        frame = self.features.assign(**{TARGET: self.target})
        payload = frame.to_csv(index=False, float_format="%.10g").encode()
        return hashlib.sha256(payload).hexdigest()[:16]


def _describe_rows(index: pd.Index, limit: int = 5) -> str:
    """Lists CSV line numbers (header is line 1) of the first rows of ``index``."""
    lines = [str(i + 2) for i in index[:limit]]
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(lines) + more


def validate_frame(frame: pd.DataFrame, min_rows_per_class: int = MIN_ROWS_PER_CLASS) -> list[str]:
    """Checks a raw frame against the wine schema.

    Args:
        frame: The frame as read from a CSV, all columns as text.
        min_rows_per_class: Fewest rows each class must have.

    Returns:
        One human-readable message per problem; empty when the frame is valid.
    """
    problems: list[str] = []
    columns = [str(c) for c in frame.columns]
    expected = [*FEATURE_NAMES, TARGET]
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    # Names from the file are shown with repr: a newline in a header cannot forge a log line.
    if extra:
        problems.append(f"unexpected columns: {', '.join(map(repr, extra))}")
    if duplicated:
        problems.append(f"duplicated columns: {', '.join(map(repr, duplicated))}")
    if frame.empty:
        problems.append("no data rows")
    if duplicated or frame.empty:
        return problems

    for column in (c for c in expected if c in columns):
        raw = frame[column]
        blank = raw.isna() | (raw.astype(str).str.strip() == "")
        if blank.any():
            problems.append(
                f"column {column!r}: {int(blank.sum())} missing value(s) "
                f"(lines {_describe_rows(raw.index[blank])})"
            )
        numbers = pd.to_numeric(raw.where(~blank), errors="coerce")
        bad = ~blank & numbers.isna()
        if bad.any():
            examples = ", ".join(repr(v) for v in raw[bad].unique()[:3])
            problems.append(
                f"column {column!r}: {int(bad.sum())} non-numeric value(s) such as {examples} "
                f"(lines {_describe_rows(raw.index[bad])})"
            )
        infinite = numbers.isin([float("inf"), float("-inf")])
        if infinite.any():
            lines = _describe_rows(raw.index[infinite])
            problems.append(f"column {column!r}: infinite value(s) (lines {lines})")

    if TARGET in columns:
        labels = pd.to_numeric(frame[TARGET], errors="coerce")
        known = labels.isin(CLASS_IDS)
        unknown = labels.notna() & ~known
        if unknown.any():
            values = ", ".join(repr(v) for v in frame[TARGET][unknown].unique()[:5])
            problems.append(
                f"column {TARGET!r}: unknown label(s) {values}; "
                f"expected one of {', '.join(map(str, CLASS_IDS))}"
            )
        counts = labels[known].astype(int).value_counts()
        for class_id in CLASS_IDS:
            count = int(counts.get(class_id, 0))
            if count < min_rows_per_class:
                problems.append(
                    f"class {class_id}: {count} row(s); at least {min_rows_per_class} "
                    "are needed for a stratified split and cross-validation"
                )
    return problems


def read_csv(path: Path, min_rows_per_class: int = MIN_ROWS_PER_CLASS) -> Dataset:
    """Reads and validates a wine CSV with the 13 feature columns and ``target``.

    Args:
        path: The CSV file.
        min_rows_per_class: Fewest rows each class must have.

    Returns:
        The validated dataset.

    Raises:
        DataValidationError: Naming every problem found; nothing is trained on such data.
    """
    source = str(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise DataValidationError(source, ["file not found"]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataValidationError(source, [f"not a readable CSV file: {exc}"]) from None
    frame = frame.replace("", pd.NA)
    problems = validate_frame(frame, min_rows_per_class)
    if problems:
        raise DataValidationError(source, problems)
    features = frame[list(FEATURE_NAMES)].astype(float)
    target = frame[TARGET].astype(float).astype(int).rename(TARGET)
    return Dataset(features=features, target=target, source=source)


def load_dataset(path: Path | None = None) -> Dataset:
    """Loads a CSV when a path is given, else scikit-learn's wine data set.

    Args:
        path: An optional CSV file.

    Returns:
        The validated dataset.
    """
    if path is not None:
        return read_csv(path)
    frame = load_wine_frame()
    return Dataset(
        features=frame[list(FEATURE_NAMES)],
        target=frame[TARGET].astype(int),
        source="sklearn.datasets.load_wine",
    )
