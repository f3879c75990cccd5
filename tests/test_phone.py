"""Phone normalisation with phonenumbers, and masking."""

from __future__ import annotations

import pytest

from worker.errors import InvalidJob, InvalidPhone
from worker.logs import mask_phones
from worker.phone import mask_phone, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "0987654321",
        "+84 987 654 321",
        "84987654321",
        "(098) 765-4321",
        " 0987.654.321 ",
        "+84987654321",
    ],
)
def test_accepted_forms_normalise_to_84_digits(raw: str) -> None:
    assert normalize_phone(raw) == "84987654321"


@pytest.mark.parametrize(
    "raw",
    [
        "garbage",
        "",
        "12345",
        "+14155552671",  # a US number
        "0243 826 1234",  # a Hanoi landline: Zalo ZNS needs a mobile
        "098765432",  # one digit short
        "09876543210",  # one digit long
        "84",
    ],
)
def test_rejected_with_a_clear_masked_error(raw: str) -> None:
    with pytest.raises(InvalidPhone) as info:
        normalize_phone(raw)
    message = str(info.value)
    assert "phone" in message
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) > 7:
        assert digits not in message.replace(" ", "")


def test_invalid_phone_is_an_invalid_job() -> None:
    with pytest.raises(InvalidJob):
        normalize_phone("not a phone")


@pytest.mark.parametrize("raw", [None, 3.5, True, ["0987654321"]])
def test_non_string_input_is_rejected(raw: object) -> None:
    with pytest.raises(InvalidPhone, match="must be a string"):
        normalize_phone(raw)


def test_mask_keeps_head_and_tail() -> None:
    assert mask_phone("84987654321") == "8498****321"
    assert mask_phone("123") == "***"


def test_log_masking_takes_phones_and_leaves_ids_whole() -> None:
    # A phone between punctuation or spaces is masked, in either form
    assert mask_phones("to 0987654321, +84987654321 and phone=84987654321.") == (
        "to 0987***321, +8498****321 and phone=8498****321."
    )
    # A run of digits inside a hex task id is not a phone: the id stays whole (logs join on it)
    task_id = "046b34e76f57431eac67e0407123205c"
    assert mask_phones(f"task {task_id} retried") == f"task {task_id} retried"
    assert mask_phones("ref AB0987654321") == "ref AB0987654321"
