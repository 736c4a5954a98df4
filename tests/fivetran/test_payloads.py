"""Payload builders: bodies validate against Fivetran's definition; bad input names the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.errors import InvalidInput
from app.fivetran.payloads import (
    MASK,
    PayloadError,
    auth_block_for,
    build_auth_patch,
    build_create_payload,
    mask_secrets,
    validate_create_payload,
    validate_update_payload,
)
from tests.fixtures.definition import definition_or_skip

pytestmark = pytest.mark.db_independent  # never uses the database under test


@pytest.fixture(scope="module")
def official() -> Any:
    return definition_or_skip()


OAUTH_CASES: dict[str, dict[str, Any]] = {
    "salesforce": {"config": {"authentication_method": "STANDARD", "sync_formula_fields": True}},
    "salesforce_sandbox": {"config": {"authentication_method": "STANDARD"}},
    "hubspot": {"config": {"historical_sync_time_frame": "ALL_TIME"}},
    "google_ads": {
        "config": {
            "customer_id": "123-456-7890",
            "sync_mode": "AllAccounts",
            "timeframe_months": "TWELVE",
        },
        "extra": {"client_access.developer_token": "dev-token"},
    },
    "google_analytics_4": {"config": {"sync_mode": "SPECIFIC_ACCOUNTS", "accounts": ["a1"]}},
    "google_sheets": {
        "config": {
            "sheet_id": "https://docs.google.com/spreadsheets/d/x",
            "named_range": "r1",
            "auth_type": "OAuth",
        },
        "table": "sheet_rows",
    },
    "facebook_ads": {
        "config": {"sync_mode": "AllAccounts", "timeframe_months": "SIX"},
        "tokens": {"access_token": "fb-user-token"},
    },
    "linkedin_ads": {"config": {"sync_mode": "AllAccounts", "ad_analytics": "AllReports"}},
    "bingads": {"config": {"sync_mode": "AllAccounts", "rollback_window_size": 7}},
    "pipedrive": {"config": {"domain": "acme"}},
    "quickbooks": {"config": {}, "extra": {"realm_id": "9130357766"}},
    "snapchat_ads": {"config": {"sync_mode": "AllOrganizations"}},
    "tiktok_ads": {"config": {"sync_mode": "AllAccounts"}, "tokens": {"access_token": "tt-token"}},
    "pinterest_ads": {"config": {"sync_mode": "AllAdvertisers", "report_granularity": "DAY"}},
    "asana": {"config": {"sync_mode": "AllProjects"}},
    "zoom": {"config": {}},
    "zendesk": {"config": {"domain": "acme"}, "tokens": {"access_token": "zd-token"}},
    "intercom": {"config": {"data_region": "eu"}, "tokens": {"access_token": "ic-token"}},
    "shopify": {"config": {"shop": "acme-store"}, "tokens": {"access_token": "shpat_x"}},
}

CREDENTIAL_CASES: dict[str, dict[str, Any]] = {
    "postgres": {
        "host": "db.example.com",
        "port": 5432,
        "database": "app",
        "user": "fivetran",
        "password": "pw",
        "update_method": "QUERY_BASED",
    },
    "mysql": {
        "host": "db.example.com",
        "port": 3306,
        "database": "app",
        "user": "fivetran",
        "password": "pw",
        "update_method": "TELEPORT",
    },
    "sql_server": {
        "host": "db.example.com",
        "port": 1433,
        "database": "app",
        "user": "fivetran",
        "password": "pw",
    },
    "stripe": {"api_key": "rk_test_x"},
    "s3": {
        "bucket": "acme-data",
        "auth_type": "ACCESS_KEY",
        "access_key_id": "AKIA",
        "access_key_secret": "s3cr3t",
        "file_type": "csv",
    },
}


def _oauth_body(service: str) -> dict[str, Any]:
    case = OAUTH_CASES[service]
    tokens = case.get("tokens", {"refresh_token": "rt-123"})
    auth = auth_block_for(
        service, client_id="cid", client_secret="csecret", extra=case.get("extra"), **tokens
    )
    return build_create_payload(
        service,
        group_id="grp_1",
        schema=f"{service}_acme",
        config=case["config"],
        auth=auth,
        table=case.get("table"),
    )


@pytest.mark.parametrize("service", sorted(OAUTH_CASES))
def test_oauth_payload_validates_against_official_definition(service: str, official: Any) -> None:
    body = _oauth_body(service)
    errors = sorted(official(service).iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    assert body["auth"], "an OAuth service gets an auth block"
    assert body["paused"] is True and body["run_setup_tests"] is True


@pytest.mark.parametrize("service", sorted(CREDENTIAL_CASES))
def test_credential_payload_validates_against_official_definition(
    service: str, official: Any
) -> None:
    body = build_create_payload(
        service,
        group_id="grp_1",
        schema=f"{service}_acme",
        config=CREDENTIAL_CASES[service],
        table="files" if service == "s3" else None,
        sync_frequency=1440,
        daily_sync_time="03:00",
    )
    assert "auth" not in body
    errors = sorted(official(service).iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]


def test_official_definition_check_is_real(official: Any) -> None:
    """The reference validator does reject what it should (so the tests above can fail)."""
    body = _oauth_body("salesforce")
    bad = copy.deepcopy(body)
    bad["config"]["authentication_method"] = "PASSWORD"
    assert list(official("salesforce").iter_errors(bad))
    bad = copy.deepcopy(body)
    del bad["config"]["schema"]
    assert list(official("salesforce").iter_errors(bad))
    bad = copy.deepcopy(body)
    bad["sync_frequency"] = 7
    assert list(official("salesforce").iter_errors(bad))


def test_auth_shapes_per_service() -> None:
    sf = auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token="r")
    assert sf == {"client_access": {"client_id": "c", "client_secret": "s"}, "refresh_token": "r"}
    ga = auth_block_for(
        "google_ads",
        client_id="c",
        client_secret="s",
        refresh_token="r",
        extra={"client_access.developer_token": "d"},
    )
    assert ga["client_access"]["developer_token"] == "d"
    qb = auth_block_for(
        "quickbooks", client_id="c", client_secret="s", refresh_token="r", extra={"realm_id": "42"}
    )
    assert qb["realm_id"] == "42" and qb["refresh_token"] == "r"
    fb = auth_block_for("facebook_ads", client_id="c", client_secret="s", access_token="a")
    assert fb == {"client_access": {"client_id": "c", "client_secret": "s"}, "access_token": "a"}
    for service in ("intercom", "shopify"):
        block = auth_block_for(
            service, client_id="c", client_secret="s", access_token="a", refresh_token="r"
        )
        assert block == {"access_token": "a"}, service  # access-token only
    zd = auth_block_for("zendesk", access_token="a")
    assert zd == {"access_token": "a"}


def test_auth_block_accepts_secret_wrappers() -> None:
    class Wrapped:
        def __init__(self, value: str) -> None:
            self._v = value

        def reveal(self) -> str:
            return self._v

    block = auth_block_for(
        "hubspot", client_id="c", client_secret=Wrapped("s"), refresh_token=Wrapped("r")
    )
    assert block == {
        "client_access": {"client_id": "c", "client_secret": "s"},
        "refresh_token": "r",
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"extra": {"client_access.tenant": "x"}}, "auth.client_access.tenant"),
        ({"extra": {"realm_id": "x"}}, "auth.realm_id"),
    ],
)
def test_auth_block_rejects_unknown_targets(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token="r", **kwargs)
    assert info.value.field == field


def test_auth_block_needs_a_token_the_service_accepts() -> None:
    with pytest.raises(PayloadError) as info:
        auth_block_for("salesforce", client_id="c", client_secret="s", access_token="a")
    assert info.value.field == "auth"
    assert "refresh_token" in info.value.message
    with pytest.raises(PayloadError) as info:
        auth_block_for("postgres", access_token="a")
    assert info.value.field == "auth"


@pytest.mark.parametrize(
    ("service", "kwargs", "field"),
    [
        ("salesforce", {"config": {"domain": "acme"}}, "config.domain"),
        (
            "salesforce",
            {"config": {"authentication_method": "OAUTH"}},
            "config.authentication_method",
        ),
        ("salesforce", {"config": {"connecting_user": "me"}}, "config.connecting_user"),
        ("salesforce", {"config": {"sync_formula_fields": "yes"}}, "config.sync_formula_fields"),
        ("salesforce", {"config": {}, "sync_frequency": 7}, "sync_frequency"),
        ("salesforce", {"config": {}, "sync_frequency": "1440"}, "sync_frequency"),
        ("salesforce", {"config": {}, "daily_sync_time": "14:30"}, "daily_sync_time"),
        ("salesforce", {"config": {}, "networking_method": "Carrier"}, "networking_method"),
        ("postgres", {"config": {"port": "5432"}}, "config.port"),
        (
            "google_ads",
            {"config": {"reports": [{"table": "t", "fields": "clicks"}]}},
            "config.reports[0].fields",
        ),
        ("google_sheets", {"config": {}}, "config.table"),
        ("postgres", {"config": {}, "auth": {"access_token": "x"}}, "auth"),
        ("salesforce", {"config": {}, "auth": {"access_token": "x"}}, "auth.access_token"),
        (
            "salesforce",
            {"config": {}, "auth": {"client_access": {"id": "x"}}},
            "auth.client_access.id",
        ),
        ("nosuchservice", {"config": {}}, "service"),
    ],
)
def test_invalid_inputs_name_the_field(service: str, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        build_create_payload(service, group_id="g", schema="s_1", **kwargs)
    assert info.value.field == field
    assert isinstance(info.value, InvalidInput)
    assert info.value.status == 422
    assert field in str(info.value)


def test_schema_placement_per_format() -> None:
    pg = build_create_payload("postgres", group_id="g", schema="pg", config={"host": "h"})
    assert pg["config"]["schema_prefix"] == "pg" and "schema" not in pg["config"]
    sheets = build_create_payload(
        "google_sheets", group_id="g", schema="sh", table="rows", config={"sheet_id": "x"}
    )
    assert sheets["config"]["schema"] == "sh" and sheets["config"]["table"] == "rows"
    s3 = build_create_payload("s3", group_id="g", schema="lake", table="grp", config={})
    assert s3["config"]["table_group_name"] == "grp"
    with pytest.raises(PayloadError) as info:
        build_create_payload("salesforce", group_id="g", schema="a", config={"schema": "b"})
    assert info.value.field == "config.schema"
    with pytest.raises(PayloadError) as info:
        build_create_payload("salesforce", group_id="g", schema="1bad-name", config={})
    assert info.value.field == "config.schema"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"service": "salesforce", "config": {"schema": "s"}}, "group_id"),
        ({"group_id": "g", "config": {"schema": "s"}}, "service"),
        ({"group_id": "g", "service": "salesforce"}, "config.schema"),
        ({"group_id": "g", "service": "salesforce", "config": {}}, "config.schema"),
        (
            {"group_id": "g", "service": "salesforce", "config": {"schema": "s"}, "colour": "red"},
            "colour",
        ),
        (
            {"group_id": "g", "service": "salesforce", "config": {"schema": "s"}, "paused": "no"},
            "paused",
        ),
        ({"group_id": "g", "service": "s3", "config": {"schema": "s"}}, "config.table_group_name"),
    ],
)
def test_validate_create_payload(body: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        validate_create_payload(body)
    assert info.value.field == field


def test_auth_patch_and_update_validation() -> None:
    auth = auth_block_for("salesforce", client_id="c", client_secret="s", refresh_token="new")
    body = build_auth_patch("salesforce", auth=auth)
    assert body == {"auth": auth, "run_setup_tests": True}
    validate_update_payload("salesforce", {"paused": False})
    with pytest.raises(PayloadError) as info:
        validate_update_payload("salesforce", {"run_setup_tests": True, "trust_fingerprints": True})
    assert info.value.field == "body"
    with pytest.raises(PayloadError) as info:
        validate_update_payload("salesforce", {"paused": "false"})
    assert info.value.field == "paused"
    with pytest.raises(PayloadError) as info:
        build_auth_patch("intercom", auth={"refresh_token": "r"})
    assert info.value.field == "auth.refresh_token"


def test_mask_secrets_hides_every_secret() -> None:
    body = build_create_payload(
        "postgres",
        group_id="g",
        schema="pg",
        config={"host": "h", "user": "u", "password": "hunter2", "client_private_key": "KEY"},
    )
    masked = mask_secrets(body)
    assert masked["config"]["password"] == MASK
    assert masked["config"]["client_private_key"] == MASK
    assert masked["config"]["host"] == "h" and masked["config"]["user"] == "u"
    assert body["config"]["password"] == "hunter2", "the original is untouched"
    oauth = _oauth_body("google_ads")
    masked = mask_secrets(oauth)
    assert "rt-123" not in repr(masked) and "csecret" not in repr(masked)
    assert "dev-token" not in repr(masked)
    assert masked["auth"]["client_access"]["client_secret"] == MASK
