"""The feature schema is the one source of truth for column names."""

from sklearn.datasets import load_wine

from wine_mlops.features import FEATURE_NAMES, TARGET, load_wine_frame, snake_case


def test_feature_names_are_snake_case_of_sklearn_columns() -> None:
    assert tuple(snake_case(n) for n in load_wine().feature_names) == FEATURE_NAMES
    assert "od280_od315_of_diluted_wines" in FEATURE_NAMES
    assert len(FEATURE_NAMES) == 13


def test_wine_frame_has_schema_columns_and_all_rows() -> None:
    frame = load_wine_frame()
    assert list(frame.columns) == [*FEATURE_NAMES, TARGET]
    assert len(frame) == 178
    assert sorted(frame[TARGET].unique()) == [0, 1, 2]
