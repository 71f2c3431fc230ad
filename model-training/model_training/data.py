"""Loading and validating the training data (scikit-learn's wine set or a CSV)."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


class FeedbackUnavailableError(RuntimeError):
    """The prediction log could not be read.

    ``cause`` says why: ``settings`` (a URL or password file that cannot be used),
    ``unreachable`` (no answer, or the login failed) or ``unreadable`` (it answered, but the
    query failed: a missing table, a role without ``SELECT``).
    """

    def __init__(
        self, message: str, cause: Literal["settings", "unreachable", "unreadable"]
    ) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class Feedback:
    """Labelled production rows read from the prediction log, validated.

    Attributes:
        features: The rows' 13 features, in schema order.
        target: Their true class ids.
        source: Where they come from (the database URL without its password).
        rejected: Rows read but left out, with why (the first few).
        rejected_count: How many rows were left out.
    """

    features: pd.DataFrame
    target: pd.Series
    source: str
    rejected: tuple[str, ...] = ()
    rejected_count: int = 0

    def __len__(self) -> int:
        return len(self.target)


def feedback_from_rows(rows: list[tuple[list[float], int]], source: str) -> Feedback:
    """Validates labelled rows like any training data: 13 finite features, a class of 0..2.

    A row that fails is left out (and reported in :attr:`Feedback.rejected`) rather than
    rejecting them all: the rows come from production, and one bad row must not stop every
    retraining until it is deleted. What a bad row could do is bounded anyway: feedback only
    joins the training split, and the promotion gate scores candidates on the held-out test
    split of the original data.

    Args:
        rows: ``(features, true_class_id)`` pairs (:func:`wine_mlops.monitoring_db.labelled_rows`).
        source: Where they come from, for messages and the runs.
    """
    kept_features: list[list[float]] = []
    kept_target: list[int] = []
    rejected: list[str] = []
    count = 0
    for position, (values, label) in enumerate(rows, start=1):
        problem = _row_problem(values, label)
        if problem is None:
            kept_features.append([float(v) for v in values])
            kept_target.append(int(label))
            continue
        count += 1
        if len(rejected) < 5:
            rejected.append(f"row {position}: {problem}")
    features = pd.DataFrame(kept_features, columns=list(FEATURE_NAMES), dtype=float)
    target = pd.Series(kept_target, name=TARGET, dtype=int)
    return Feedback(features, target, source, tuple(rejected), count)


def _row_problem(values: object, label: object) -> str | None:
    """What is wrong with one labelled row, or None when it is valid training data."""
    if not isinstance(values, list | tuple) or len(values) != len(FEATURE_NAMES):
        return f"{len(FEATURE_NAMES)} feature values expected"
    for name, value in zip(FEATURE_NAMES, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} is not a number"
        if not math.isfinite(value):
            return f"{name} is not finite"
    if isinstance(label, bool) or label not in CLASS_IDS:
        return f"unknown class {label!r}; expected one of {', '.join(map(str, CLASS_IDS))}"
    return None


def read_feedback(url: str, password_file: Path | None, limit: int) -> Feedback:
    """Reads the newest labelled production rows of the prediction log, validated.

    Args:
        url: The prediction log's SQLAlchemy URL (``WINE_MONITORING_DB_URL``).
        password_file: The file holding the password of the URL's user, if any.
        limit: At most this many rows, the most recently labelled first.

    Raises:
        FeedbackUnavailableError: When the database cannot be reached or read.
    """
    # SQLAlchemy only where feedback is asked for
    from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

    import wine_mlops.monitoring_db as monitoring_db

    source = monitoring_db.safe_url(url)
    try:
        engine = monitoring_db.connect(url, password_file)
    except ArgumentError:
        raise FeedbackUnavailableError(
            f"WINE_MONITORING_DB_URL is not a database URL ({source})", "settings"
        ) from None
    except (OSError, ValueError) as exc:
        raise FeedbackUnavailableError(
            f"the prediction log's password file cannot be read ({exc})", "settings"
        ) from None
    try:
        rows = monitoring_db.labelled_rows(engine, limit)
    except OperationalError as exc:
        raise FeedbackUnavailableError(
            f"the prediction log at {source} cannot be reached ({_one_line(exc)})",
            "unreachable",
        ) from None
    except SQLAlchemyError as exc:
        raise FeedbackUnavailableError(
            f"the prediction log at {source} cannot be read ({_one_line(exc)})", "unreadable"
        ) from None
    finally:
        engine.dispose()
    return feedback_from_rows(rows, source)


def _one_line(error: BaseException, limit: int = 200) -> str:
    """The first line of a database error (no SQL statement, no parameters)."""
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
