"""Curated form knowledge: what end-users must fill in practice, per source family.

Fivetran's definition marks almost nothing required (6 of 621 services), yet a Postgres
connection without a host cannot work. ``CURATED`` says what is required for the most used
sources — databases and warehouses, file stores and common API-key sources — from Fivetran's
setup guides and the field descriptions of their field dictionary; every other form is derived
by the rules in :mod:`app.onboarding.forms` and says so (``x-required-source``).

``RULES`` are the selectors Fivetran uses: the value of one field decides which others are
needed (``connection_type: SshTunnel`` → tunnel fields, ``auth_method: PASSWORD`` →
``password``, ``config.auth: KEY_PAIR`` → ``private_key`` …). A rule applies to every service
that has the selector with that value and the fields it names.
"""

from __future__ import annotations

_POSTGRES = ("host", "port", "database", "user")
_MYSQL = ("host", "port", "user")
_SQL_SERVER = ("host", "port", "database", "user", "password")
_ORACLE = ("host", "port", "database", "user", "password")
_FILES_FTP = ("host", "port", "user", "password")

#: service → fields required whatever the selectors say.
CURATED: dict[str, tuple[str, ...]] = {
    # PostgreSQL family (password via auth_method PASSWORD, the default)
    **{
        s: _POSTGRES
        for s in (
            "postgres",
            "postgres_rds",
            "aurora_postgres",
            "azure_postgres",
            "google_cloud_postgresql",
            "heroku_postgres",
        )
    },
    # MySQL family
    **{
        s: _MYSQL
        for s in (
            "mysql",
            "mysql_rds",
            "aurora",
            "google_cloud_mysql",
            "maria",
            "maria_rds",
            "maria_azure",
            "magento_mysql",
            "magento_mysql_rds",
        )
    },
    # SQL Server family
    **{
        s: _SQL_SERVER
        for s in ("sql_server", "sql_server_rds", "azure_sql_db", "azure_sql_managed_db")
    },
    # Oracle family
    **{s: _ORACLE for s in ("oracle", "oracle_rds", "oracle_ebs", "oracle_rac")},
    # Warehouses
    "snowflake_db": ("host", "user", "database"),
    "bigquery_db": ("project_id",),
    "databricks_db": ("host", "http_path", "catalog"),
    "mongo": ("hosts", "user", "password"),
    "mongo_sharded": ("hosts", "user", "password"),
    "dynamodb": ("role_arn", "aws_region_code"),
    "cosmos": ("uri", "account_key"),
    # File stores
    "s3": ("bucket", "auth_type", "file_type"),
    "gcs": ("bucket", "file_type"),
    "azure_blob_storage": ("container_name", "file_type"),
    "sftp": (*_FILES_FTP, "file_type"),
    "ftp": (*_FILES_FTP, "file_type"),
    # API-key sources (the key, plus the account locator the API needs)
    "stripe": ("api_key",),
    "shopify": ("shop", "api_access_token"),
    "github": ("auth_mode",),
    "pendo": ("integration_key", "region"),
    "klaviyo": ("api_key",),
    "sendgrid": ("api_key",),
    "braze": ("api_key", "api_url"),
    "greenhouse": ("api_key",),
    "lever": ("api_key",),
    "mixpanel": ("project_id", "service_account_username", "service_account_secret"),
    "amplitude": ("project_credentials",),
    "segment": ("bucket", "role_arn"),
    "recurly": ("api_key", "sub_domain"),
    "zuora": ("client_id", "client_secret"),
    "jira": ("host", "user", "password"),
    "freshdesk": ("api_key", "subdomain"),
    "gorgias": ("api_key", "subdomain", "username"),
    "iterable": ("api_key",),
    "delighted": ("api_key",),
    "aircall": ("api_id", "api_token"),
    "harvest": ("personal_access_token", "account_id"),
    "okta": ("api_token", "sub_domain"),
    "sentry": ("api_token", "organization_id"),
    "pagerduty": ("api_key",),
    "recharge": ("api_token",),
    "braintree": ("merchant_id", "public_key", "private_key"),
    "square": ("api_access_token",),
    "paypal": ("client_id", "secret_key"),
    "workday": ("domain_host_name", "tenant", "user_name", "password"),
    "bamboohr": ("api_key", "subdomain"),
    "marketo": ("client_id", "client_secret", "endpoint", "identity"),
    "trello": ("api_key", "api_token"),
    "zendesk": ("domain", "email", "api_token"),
    "hubspot": ("client_secret",),
}

#: (selector, value, required when selected). The selector's enum must hold the value.
RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("connection_type", "SshTunnel", ("tunnel_host", "tunnel_port", "tunnel_user")),
    ("auth_method", "PASSWORD", ("password",)),
    ("auth_method", "CLIENT_CERTIFICATE", ("client_private_key", "client_public_certificate")),
    ("auth_method", "ENTRA_ID", ("entra_app_id", "entra_tenant_id")),
    ("update_method", "WAL_PGOUTPUT", ("replication_slot", "publication_name")),
    ("auth", "PASSWORD", ("password",)),
    ("auth", "KEY_PAIR", ("private_key",)),
    ("auth", "TOKEN", ("personal_access_token",)),
    ("auth", "personal_access_token", ("personal_access_token",)),
    ("auth_mode", "PersonalAccessToken", ("pats",)),
    ("auth_mode", "JWT", ("client_id", "private_key")),
    ("auth_type", "ACCESS_KEY", ("access_key_id", "access_key_secret")),
    ("auth_type", "IAM_ROLE", ("role_arn",)),
    ("export_storage_type", "AWS_S3", ("aws_credentials",)),
    ("export_storage_type", "AZURE", ("azure_credentials",)),
    ("export_storage_type", "GCS", ("gcs_credentials",)),
    ("sync_mode", "SpecificRepositories", ("repositories",)),
    ("sync_mode", "SpecificAccounts", ("accounts",)),
)

#: Selector defaults (the value Fivetran assumes when the field is omitted).
DEFAULTS: dict[str, object] = {
    "connection_type": "Directly",
    "auth_method": "PASSWORD",
    "tunnel_port": 22,
    "auth": "PASSWORD",
    "auth_mode": "PersonalAccessToken",
}
#: Default ports by service family (applied when the form has a ``port`` field).
PORTS: dict[str, int] = {
    **{s: 5432 for s in CURATED if CURATED[s] == _POSTGRES},
    **{s: 3306 for s in CURATED if CURATED[s] == _MYSQL},
    **{s: 1433 for s in CURATED if CURATED[s] == _SQL_SERVER},
    **{s: 1521 for s in CURATED if CURATED[s] == _ORACLE},
    "snowflake_db": 443,
    "databricks_db": 443,
    "sftp": 22,
    "ftp": 21,
}
#: Values a credentials form does not offer (they are OAuth or dashboard-only paths).
NOT_OFFERED_VALUES: dict[str, tuple[str, ...]] = {
    "auth_mode": ("OAuth",),
    "auth": ("OAUTH2", "oauth_2"),
}

#: Human labels of common field names (others: the name, humanised).
LABELS: dict[str, str] = {
    "host": "Host",
    "hosts": "Hosts",
    "port": "Port",
    "user": "User",
    "username": "Username",
    "password": "Password",
    "database": "Database",
    "api_key": "API key",
    "api_token": "API token",
    "api_secret": "API secret",
    "pats": "Personal access tokens",
    "private_key": "Private key",
    "passphrase": "Private key passphrase",
    "connection_type": "Connection method",
    "tunnel_host": "SSH host",
    "tunnel_port": "SSH port",
    "tunnel_user": "SSH user",
    "update_method": "Update method",
    "auth_method": "Authentication method",
    "auth_mode": "Authentication mode",
    "auth_type": "Authentication type",
    "auth": "Authentication",
    "role_arn": "IAM role ARN",
    "access_key_id": "Access key ID",
    "access_key_secret": "Secret access key",
    "project_id": "Project ID",
    "http_path": "HTTP path",
    "base_url": "Base URL",
    "host_url": "Host URL",
    "sub_domain": "Subdomain",
}
ENUM_LABELS: dict[str, str] = {
    "Directly": "Connect directly",
    "SshTunnel": "SSH tunnel",
    "PrivateLink": "Private link",
    "ProxyAgent": "Proxy agent",
    "PASSWORD": "Password",
    "KEY_PAIR": "Key pair",
    "TOKEN": "Personal access token",
    "OAUTH2": "OAuth 2",
    "CLIENT_CERTIFICATE": "Client certificate",
    "ENTRA_ID": "Microsoft Entra ID",
    "AWS_IAM": "AWS IAM",
    "WAL_PGOUTPUT": "Logical replication (pgoutput)",
    "QUERY_BASED": "Query based (xmin)",
    "BINLOG": "Binary log",
    "TELEPORT": "Teleport sync",
    "PersonalAccessToken": "Personal access token",
    "JWT": "GitHub App (JWT)",
    "ACCESS_KEY": "Access key",
    "IAM_ROLE": "IAM role",
    "PUBLIC_BUCKET": "Public bucket",
}

#: Form groups in display order: (id, title, field names).
GROUPS: tuple[tuple[str, str, frozenset[str]], ...] = (
    (
        "connection",
        "Connection",
        frozenset(
            {
                "host",
                "hosts",
                "port",
                "database",
                "account",
                "domain",
                "sub_domain",
                "subdomain",
                "shop",
                "site",
                "instance",
                "region",
                "bucket",
                "project_id",
                "data_set_name",
                "catalog",
                "http_path",
                "base_url",
                "host_url",
                "api_url",
                "container_name",
                "organization",
                "merchant_id",
                "account_id",
                "email",
                "connection_string",
                "role",
                "warehouse",
            }
        ),
    ),
    (
        "authentication",
        "Authentication",
        frozenset(
            {
                "auth",
                "auth_method",
                "auth_mode",
                "auth_type",
                "authentication_method",
                "user",
                "username",
                "password",
                "api_key",
                "api_token",
                "api_secret",
                "access_token",
                "personal_access_token",
                "pats",
                "secret_key",
                "private_key",
                "passphrase",
                "is_private_key_encrypted",
                "client_id",
                "client_secret",
                "access_key_id",
                "access_key_secret",
                "role_arn",
                "client_private_key",
                "client_public_certificate",
                "entra_app_id",
                "entra_tenant_id",
                "integration_key",
                "api_access_token",
                "public_key",
                "token",
                "access_key",
            }
        ),
    ),
    (
        "network",
        "Network",
        frozenset({"connection_type", "tunnel_host", "tunnel_port", "tunnel_user"}),
    ),
    (
        "sync",
        "What to sync",
        frozenset(
            {
                "update_method",
                "replication_slot",
                "publication_name",
                "replica_id",
                "sync_mode",
                "repositories",
                "accounts",
                "file_type",
                "prefix",
                "pattern",
                "historical_sync_time_frame",
                "backward_sync_limit",
                "timeframe_months",
                "export_storage_type",
                "aws_credentials",
                "azure_credentials",
                "gcs_credentials",
                "project_credentials",
                "secrets_list",
                "function",
            }
        ),
    ),
)
ADVANCED = ("advanced", "Advanced")
