"""The feature schema is the one source of truth for column names."""

from sklearn.datasets import load_wine

from wine_mlops.features import (
    CLASS_IDS,
    FEATURE_NAMES,
    TARGET,
    class_name,
    load_wine_frame,
    snake_case,
)


def test_feature_names_are_snake_case_of_sklearn_columns() -> None:
    assert tuple(snake_case(n) for n in load_wine().feature_names) == FEATURE_NAMES
    assert "od280_od315_of_diluted_wines" in FEATURE_NAMES
    assert len(FEATURE_NAMES) == 13


def test_wine_frame_has_schema_columns_and_all_rows() -> None:
    frame = load_wine_frame()
    assert list(frame.columns) == [*FEATURE_NAMES, TARGET]
    assert len(frame) == 178
    assert sorted(frame[TARGET].unique()) == [0, 1, 2]


def test_class_name_labels_each_cultivar_and_names_unknown_ids() -> None:
    assert [class_name(c) for c in CLASS_IDS] == ["Cultivar 1", "Cultivar 2", "Cultivar 3"]
    assert class_name(1, ("red", "white", "rosé")) == "white"
    assert class_name(3) == "class 3"
    assert class_name(-1) == "class -1"
