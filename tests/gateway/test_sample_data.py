"""The shipped sample datasets are what the generator makes, and big enough."""

from __future__ import annotations

from gateway.constants import SAMPLE_DATA_DIR
from gateway.sample_data.generate import generate


def test_generator_reproduces_the_committed_csvs_byte_for_byte(tmp_path):
    for written in generate(tmp_path):
        assert written.read_bytes() == (SAMPLE_DATA_DIR / written.name).read_bytes(), written.name


def test_the_big_dataset_has_10k_rows_and_the_small_one_a_few():
    def rows(name: str) -> int:
        return (SAMPLE_DATA_DIR / name).read_text(encoding="utf-8").count("\n") - 1

    assert rows("observations.csv") >= 10_000
    assert 5 <= rows("stations.csv") < 100
