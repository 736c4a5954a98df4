"""The committed service index is exactly what build_index produces from the definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.fivetran import build_index
from app.fivetran.index import all_services, destination_services, get_service, request_fields
from tests.fixtures.fivetran import SPEC_PATH

pytestmark = pytest.mark.db_independent  # never uses the database under test

COMMITTED = Path(build_index.__file__).resolve().parent / "data" / "service_index.json"


def test_committed_index_matches_the_definition() -> None:
    if not SPEC_PATH.exists():
        pytest.skip(f"Fivetran's definition is not available at {SPEC_PATH}")
    doc = json.loads(SPEC_PATH.read_text())
    assert COMMITTED.read_text() == build_index.render(doc), (
        "app/fivetran/data/service_index.json is stale: run "
        f"python -m app.fivetran.build_index {SPEC_PATH}"
    )


def test_build_index_cli_writes_the_file(tmp_path: Path) -> None:
    if not SPEC_PATH.exists():
        pytest.skip(f"Fivetran's definition is not available at {SPEC_PATH}")
    out = tmp_path / "index.json"
    assert build_index.main([str(SPEC_PATH), str(out)]) == 0
    assert out.read_text() == COMMITTED.read_text()
    assert build_index.main([]) == 2


def test_index_content() -> None:
    services = all_services()
    assert len(services) > 700
    sf = get_service("salesforce")
    assert sf is not None
    assert sf.schema_format == "schema" and sf.required_config == ["schema"]
    assert sf.auth_paths() == [
        "client_access.client_id",
        "client_access.client_secret",
        "refresh_token",
    ]
    # quirk: enum typed "object" is a string enum
    method = sf.config_fields["authentication_method"]
    assert method.type == "string" and method.enum == ("STANDARD", "ADVANCED")
    assert sf.config_fields["private_key"].secret
    assert "connecting_user" in sf.readonly_config
    assert get_service("postgres").auth_tree is None  # type: ignore[union-attr]
    assert get_service("postgres").schema_format == "schema_prefix"  # type: ignore[union-attr]
    assert get_service("s3").required_config == ["schema", "table_group_name"]  # type: ignore[union-attr]
    assert get_service("nope") is None
    # quirk: integer sync_frequency with string enum values → integers
    assert request_fields("create")["sync_frequency"].enum == (
        1,
        5,
        15,
        30,
        60,
        120,
        180,
        360,
        480,
        720,
        1440,
    )
    assert "snowflake" in destination_services()
    reports = get_service("google_ads").config_fields["reports"]  # type: ignore[union-attr]
    assert reports.items is not None and reports.items.properties is not None
    schema = reports.to_json_schema()
    assert schema["type"] == "array" and "fields" in schema["items"]["properties"]


def test_service_never_reads_shared_at_run_time() -> None:
    app_root = Path(build_index.__file__).resolve().parents[1]
    paths = [
        *(app_root / "fivetran").rglob("*.py"),
        *(app_root / "sandbox" / "fivetran").rglob("*.py"),
    ]
    for path in paths:
        if path.name == "build_index.py":
            continue
        assert "/work/shared" not in path.read_text(), path
        assert "../shared" not in path.read_text(), path
