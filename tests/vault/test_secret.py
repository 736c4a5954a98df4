"""``Secret`` never shows its value by accident."""

from __future__ import annotations

import copy
import json
import logging
import pickle

import pytest
from pydantic import BaseModel

from app.vault import Secret

pytestmark = pytest.mark.db_independent  # never uses the database under test

VALUE = "rt-PLAINTEXT-secretwrapper"


def test_repr_str_format_mask_the_value():
    s = Secret(VALUE)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", f"{s:>40}", "%s" % (s,), "{}".format(s)):  # noqa: UP031,UP032
        assert VALUE not in text
        assert "**********" in text
    assert repr(s) == "Secret('**********')"
    assert VALUE not in repr([s, {"k": s}, (s,)])
    assert s.reveal() == VALUE


def test_not_in_json_pickle_or_pydantic_dumps():
    s = Secret(VALUE)
    with pytest.raises(TypeError) as err:
        json.dumps({"token": s})
    assert VALUE not in str(err.value)
    with pytest.raises(TypeError):
        pickle.dumps(s)

    class Model(BaseModel):
        token: Secret
        other: str = "x"

    m = Model(token=VALUE)
    assert isinstance(m.token, Secret) and m.token.reveal() == VALUE
    assert VALUE not in repr(m) and VALUE not in str(m)
    assert m.model_dump()["token"] == "**********"
    assert VALUE not in m.model_dump_json()
    assert Model(token=s).token is s
    schema = Model.model_json_schema()["properties"]["token"]
    assert schema["format"] == "password" and schema["writeOnly"] is True


def test_equality_is_by_value_and_immutable():
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    with pytest.raises(AttributeError):
        Secret("a")._value = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(Secret("a"))
    assert copy.deepcopy(Secret("a")) == Secret("a")
    assert Secret(Secret("a")).reveal() == "a"
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_logging_a_secret_prints_the_mask(caplog):
    caplog.set_level(logging.DEBUG)
    s = Secret(VALUE)
    logging.getLogger("pbf.test").debug("value %s %r", s, s, extra={"v": s})
    assert VALUE not in caplog.text
    for rec in caplog.records:
        assert VALUE not in rec.getMessage()
        assert VALUE not in repr(rec.__dict__)
