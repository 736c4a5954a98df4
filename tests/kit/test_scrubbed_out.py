"""Answers built from stored rows: text that cannot be encoded is replaced, clean text is
passed through untouched (the status read's hot path builds nothing)."""

from __future__ import annotations

import pytest

from app.input_guard import scrub

pytestmark = pytest.mark.db_independent


def test_a_clean_value_comes_back_as_it_is() -> None:
    value = {"config": {"timezone": "UTC", "ids": ["1", 2, None]}, "tests": ({"s": "ok"},)}
    assert scrub(value) is value


@pytest.mark.parametrize("bad", ["\ud800", "\udfff", "\x00"])
def test_surrogates_and_nul_are_replaced_anywhere_keys_included(bad: str) -> None:
    value = {"a": [f"x{bad}y", (f"{bad}",)], f"k{bad}": {"n": 1, "s": f"{bad}{bad}"}}
    assert scrub(value) == {
        "a": ["x\ufffdy", ["\ufffd"]],
        "k\ufffd": {"n": 1, "s": "\ufffd\ufffd"},
    }
