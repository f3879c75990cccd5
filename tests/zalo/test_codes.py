"""The error-code table: every CSV row maps to the class and action the CSV names."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from worker.errors import Action, ErrorClass, UnknownApiError, ZaloApiError
from worker.zalo.codes import EXCEPTION_BY_CLASS, api_error, code_table, lookup

PACKAGED_CSV = Path(__file__).parents[2] / "worker" / "zalo" / "error-codes.csv"
SHARED_CSV = Path(__file__).parents[3] / "shared" / "zalo" / "error-codes.csv"


def _rows() -> list[dict[str, str]]:
    with PACKAGED_CSV.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row["code"])
def test_every_csv_code_maps_to_its_class_and_action(row: dict[str, str]) -> None:
    code = int(row["code"])
    info = lookup(code)
    assert info is not None
    assert info.error_class == ErrorClass(row["class"])
    assert info.action == Action(row["action"])
    if code == 0:
        return
    exc = api_error(code, "zalo says no", endpoint="/message/template")
    assert isinstance(exc, EXCEPTION_BY_CLASS[ErrorClass(row["class"])])
    assert exc.error_class.value == row["class"]
    assert exc.action.value == row["action"]
    assert exc.code == code
    assert str(code) in str(exc) and "zalo says no" in str(exc)


def test_table_holds_every_row() -> None:
    assert len(code_table()) == len(_rows())


def test_every_error_class_in_the_csv_has_an_exception_type() -> None:
    classes = {ErrorClass(row["class"]) for row in _rows()} - {ErrorClass.SUCCESS}
    assert classes <= set(EXCEPTION_BY_CLASS)


def test_unknown_code_is_unknown_class_with_raw_code() -> None:
    exc = api_error(-99999, "", endpoint="/message/template")
    assert isinstance(exc, UnknownApiError)
    assert isinstance(exc, ZaloApiError)
    assert exc.code == -99999
    assert exc.action is Action.RETRY_THEN_DEAD_LETTER
    assert "-99999" in str(exc)


def test_transient_is_a_property_of_the_type() -> None:
    assert api_error(-100, "", endpoint="x").transient
    assert not api_error(-108, "", endpoint="x").transient
    assert not api_error(-115, "", endpoint="x").transient


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="shared/ not beside this checkout")
def test_packaged_table_matches_the_shared_one() -> None:
    assert PACKAGED_CSV.read_text(encoding="utf-8") == SHARED_CSV.read_text(encoding="utf-8")
