"""Data contracts: a malformed CSV is rejected with a message naming each problem."""

from pathlib import Path

import pandas as pd
import pytest

from model_training.data import DataValidationError, load_dataset, read_csv
from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame


@pytest.fixture
def wine_csv(tmp_path: Path) -> Path:
    path = tmp_path / "wine.csv"
    load_wine_frame().to_csv(path, index=False)
    return path


def _rewrite(path: Path, change) -> Path:
    frame = pd.read_csv(path, dtype=str)
    frame = change(frame)
    frame.to_csv(path, index=False)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(DataValidationError) as info:
        read_csv(path)
    return info.value.problems


def test_valid_csv_loads_like_the_builtin_dataset(wine_csv: Path) -> None:
    from_csv, builtin = read_csv(wine_csv), load_dataset()
    assert list(from_csv.features.columns) == list(FEATURE_NAMES)
    assert from_csv.digest == builtin.digest
    assert from_csv.target.tolist() == builtin.target.tolist()


def test_column_order_does_not_matter(wine_csv: Path) -> None:
    _rewrite(wine_csv, lambda f: f[list(reversed(f.columns))])
    assert read_csv(wine_csv).digest == load_dataset().digest


def test_missing_and_extra_columns_are_named(wine_csv: Path) -> None:
    _rewrite(wine_csv, lambda f: f.drop(columns=["hue", "proline"]).assign(colour="red"))
    problems = _problems(wine_csv)
    assert "missing columns: hue, proline" in problems
    assert "unexpected columns: 'colour'" in problems


def test_a_newline_in_a_column_name_cannot_forge_a_log_line(wine_csv: Path) -> None:
    forged = "x\n2030-01-01 00:00:00 INFO    model_training: registered as champion"
    _rewrite(wine_csv, lambda f: f.assign(**{forged: "1"}))
    with pytest.raises(DataValidationError) as info:
        read_csv(wine_csv)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + len(info.value.problems)  # the header, then one line a problem
    assert not any(line.startswith("2030-01-01") for line in lines)
    assert f"unexpected columns: {forged!r}" in info.value.problems


def test_non_numeric_and_missing_values_name_column_and_line(wine_csv: Path) -> None:
    def spoil(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[3, "alcohol"] = "strong"
        frame.loc[7, "ash"] = ""
        frame.loc[8, "magnesium"] = "NaN"
        return frame

    problems = _problems(_rewrite(wine_csv, spoil))
    assert any("'alcohol'" in p and "'strong'" in p and "lines 5" in p for p in problems), problems
    assert any("'ash'" in p and "missing" in p and "lines 9" in p for p in problems), problems
    assert any("'magnesium'" in p and "non-numeric" in p for p in problems), problems


def test_unknown_labels_are_listed(wine_csv: Path) -> None:
    _rewrite(wine_csv, lambda f: f.assign(**{TARGET: f[TARGET].replace("2", "7")}))
    problems = _problems(wine_csv)
    assert any("unknown label(s) '7'" in p for p in problems), problems
    assert any(p.startswith("class 2: 0 row(s)") for p in problems), problems


def test_too_few_rows_per_class(wine_csv: Path) -> None:
    _rewrite(wine_csv, lambda f: pd.concat([f[f[TARGET] != "1"], f[f[TARGET] == "1"].head(3)]))
    assert any(p.startswith("class 1: 3 row(s)") for p in _problems(wine_csv))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert _problems(empty)[0].startswith("not a readable CSV file")
    assert _problems(tmp_path / "absent.csv") == ["file not found"]
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join([*FEATURE_NAMES, TARGET]) + "\n")
    assert "no data rows" in _problems(header_only)


def test_every_problem_is_reported_at_once(wine_csv: Path) -> None:
    def spoil(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.drop(columns=["hue"])
        frame.loc[0, "alcohol"] = "x"
        frame.loc[1, TARGET] = "9"
        return frame

    with pytest.raises(DataValidationError) as info:
        read_csv(_rewrite(wine_csv, spoil))
    error_text = str(info.value)
    for expected in ("missing columns: hue", "'alcohol'", "unknown label(s) '9'"):
        assert expected in error_text
