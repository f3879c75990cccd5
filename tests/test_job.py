"""The job contract: regressions found by the chaos fuzz tests."""

from __future__ import annotations

import math

import pytest

from worker.errors import InvalidJob
from worker.job import masked_kwargs_repr, parse_job
from worker.producer import Producer

GOOD = {"phone": "0987654321", "template_id": "1", "template_data": {"a": 1}}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(InvalidJob, match="template_data"):
        parse_job({**GOOD, "template_data": {"a": value}}, default_key="k")


@pytest.mark.parametrize("field", ["idempotency_key", "journey", "tracking_id"])
def test_lone_surrogates_are_refused(field: str) -> None:
    with pytest.raises(InvalidJob, match="UTF-8"):
        parse_job({**GOOD, field: "\ud800"}, default_key="k")


def test_surrogate_inside_template_data_is_refused() -> None:
    with pytest.raises(InvalidJob, match="UTF-8"):
        parse_job({**GOOD, "template_data": {"name": "An\udcff"}}, default_key="k")


def test_masked_repr_hides_phone_and_template_values() -> None:
    job = parse_job({**GOOD, "template_data": {"name": "Nguyen Van A"}}, default_key="k")
    shown = masked_kwargs_repr({**job.kwargs(), "_meta": {"history": []}})
    assert "84987654321" not in shown and "Nguyen" not in shown and "_meta" not in shown
    assert "8498****321" in shown and "'name'" in shown


@pytest.mark.parametrize("value", [0, -1, 10_001, "2", 2.0, True])
def test_step_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(InvalidJob, match="step"):
        Producer.validate({**GOOD, "step": value})


def test_step_is_optional_and_kept_when_given() -> None:
    assert "step" not in parse_job(GOOD, default_key="k").kwargs()  # as before issue #8
    assert parse_job({**GOOD, "step": 3}, default_key="k").kwargs()["step"] == 3
