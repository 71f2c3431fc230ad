"""``data/example.csv``, the README's sample for "Train on your own CSV", is a valid dataset."""

from pathlib import Path

from model_training.data import load_dataset, read_csv

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example.csv"


def test_the_example_csv_trains_on_exactly_the_builtin_wine_data() -> None:
    example = read_csv(EXAMPLE)
    builtin = load_dataset()
    # Same content digest: a run on the example groups with runs on the built-in data.
    assert example.digest == builtin.digest
    assert example.features.shape == (178, 13)
    assert sorted(example.target.value_counts().items()) == [(0, 59), (1, 71), (2, 48)]
