"""Catalog metadata of a source: its category and icon.

Categories follow the families of Fivetran's connector directory; a service is placed by
explicit lists first, then by name patterns (``*_ads`` → marketing …), else ``application``.
Icons use the URL pattern of Fivetran's connector metadata (``icon_url`` of
``/v1/metadata/connector-types``, e.g. ``…/integrations/google_ads/resources/google-ads.png``).
"""

from __future__ import annotations

import re

from app.config import Settings

CATEGORIES = (
    "database",
    "warehouse",
    "file",
    "function",
    "event",
    "marketing",
    "sales",
    "support",
    "finance",
    "engineering",
    "productivity",
    "hr",
    "application",
)
ICON_URL_TEMPLATE = "https://fivetran.com/integrations/{service}/resources/{slug}.png"

_EXPLICIT: dict[str, str] = {
    **{s: "warehouse" for s in ("snowflake_db", "bigquery_db", "databricks_db", "redshift_db")},
    **{
        s: "file"
        for s in (
            "s3",
            "gcs",
            "azure_blob_storage",
            "sftp",
            "ftp",
            "ftps",
            "google_drive",
            "box",
            "dropbox",
            "share_point",
            "email",
            "one_drive",
            "adls",
            "azure_file_storage",
            "google_sheets",
            "wasabi_cloud_storage",
        )
    },
    **{
        s: "function"
        for s in ("aws_lambda", "azure_function", "google_cloud_function", "connector_sdk")
    },
    **{
        s: "event"
        for s in (
            "apache_kafka",
            "confluent_cloud",
            "kinesis",
            "amqp",
            "azure_event_hub",
            "segment",
            "snowplow",
            "webhooks",
            "heap",
            "amplitude",
            "mixpanel",
            "pendo",
        )
    },
    **{
        s: "finance"
        for s in (
            "stripe",
            "quickbooks",
            "xero",
            "netsuite_suiteanalytics",
            "braintree",
            "paypal",
            "recurly",
            "chargebee",
            "zuora",
            "square",
            "shopify",
            "recharge",
            "adyen",
        )
    },
    **{
        s: "sales"
        for s in (
            "salesforce",
            "salesforce_sandbox",
            "hubspot",
            "pipedrive",
            "outreach",
            "gong",
            "close",
            "copper",
            "dynamics_365",
        )
    },
    **{
        s: "support"
        for s in (
            "zendesk",
            "zendesk_chat",
            "freshdesk",
            "intercom",
            "gorgias",
            "helpscout",
            "kustomer",
            "front",
            "aircall",
            "delighted",
        )
    },
    **{
        s: "engineering"
        for s in (
            "github",
            "gitlab",
            "jira",
            "sentry",
            "pagerduty",
            "okta",
            "bitbucket",
            "circleci",
            "launchdarkly",
        )
    },
    **{
        s: "productivity"
        for s in (
            "asana",
            "trello",
            "airtable",
            "notion",
            "monday",
            "clickup",
            "typeform",
            "zoom",
            "slack",
        )
    },
    **{
        s: "hr"
        for s in (
            "greenhouse",
            "lever",
            "workday",
            "bamboohr",
            "adp_workforce_now",
            "gusto",
            "rippling",
            "personio",
            "hibob",
            "lattice",
            "15five",
        )
    },
    **{
        s: "marketing"
        for s in (
            "klaviyo",
            "sendgrid",
            "mailchimp",
            "braze",
            "iterable",
            "marketo",
            "pardot",
            "customer_io",
            "attentive",
        )
    },
}
_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        r"(^|_)(postgres|postgresql|mysql|maria|sql_server|sql_db|oracle|mongo|dynamodb|cosmos"
        r"|db2|sap_hana|aurora|cockroach|elastic|opensearch|cassandra|couchbase|firebase"
        r"|documentdb|hana|sqlserver|teradata|vertica|clickhouse|singlestore)",
        "database",
    ),
    (
        r"(_ads$|ads_|_ad_|advertising|adwords|dv360|campaign_manager|google_search_console)",
        "marketing",
    ),
    (r"(_db$|_warehouse$)", "warehouse"),
)


def category_of(service: str) -> str:
    """The catalog category of ``service`` (one of :data:`CATEGORIES`)."""
    if service in _EXPLICIT:
        return _EXPLICIT[service]
    for pattern, category in _PATTERNS:
        if re.search(pattern, service):
            return category
    return "application"


def icon_url(service: str, settings: Settings | None = None) -> str:
    """The icon of ``service`` (Fivetran's connector icon)."""
    return ICON_URL_TEMPLATE.format(service=service, slug=service.replace("_", "-"))
