"""Loading CSV files as typed datasets."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.datasets import ColumnType, DatasetError, load_dataset, load_datasets


def write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_types_are_inferred_from_every_row_not_just_the_first(tmp_path):
    lines = ["n,flag,day"] + [f"{i},true,2024-01-01" for i in range(20_000)] + ["2.5,false,2024-01-02"]
    dataset = load_dataset(write(tmp_path, "late.csv", lines))
    assert dataset.types == {"n": ColumnType.FLOAT, "flag": ColumnType.BOOL, "day": ColumnType.DATE}
    assert dataset.rows == 20_001


def test_datetimes_with_offsets_become_naive_utc(tmp_path):
    path = write(tmp_path, "times.csv", ["at", "2024-01-01T10:00:00+02:00", "2024-01-01T10:00:00Z"])
    dataset = load_dataset(path)
    assert dataset.types == {"at": ColumnType.DATETIME}
    assert dataset.frame["at"].to_list() == [datetime(2024, 1, 1, 8), datetime(2024, 1, 1, 10)]


def test_text_that_only_looks_like_a_date_at_first_stays_text(tmp_path):
    path = write(tmp_path, "mixed.csv", ["code,empty,clock", "2024-01-01,,12:30", "2024-01-01x,,13:00"])
    assert load_dataset(path).types == {
        "code": ColumnType.STRING,
        "empty": ColumnType.STRING,
        "clock": ColumnType.STRING,
    }


def test_every_csv_of_the_directory_is_a_dataset_by_name(tmp_path):
    write(tmp_path, "b.csv", ["x", "1"])
    write(tmp_path, "a.csv", ["y", "2"])
    write(tmp_path, "notes.txt", ["ignored"])
    assert list(load_datasets(tmp_path)) == ["a", "b"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"no \*\.csv files in "),
        ({"bad name.csv": "x\n1\n"}, "dataset names may use"),
        ({"empty.csv": ""}, "cannot read CSV"),
    ],
)
def test_unservable_data_fails_at_start_with_a_clear_error(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError, match=message):
        load_datasets(tmp_path)
