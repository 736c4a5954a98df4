"""Languages of the end-user pages: ``Accept-Language`` negotiation and message catalogs.

English is the source language (the message ids); other languages are gettext catalogs in
``locales/<lang>/LC_MESSAGES/pages.po``, shipped as package data and compiled in memory
with Babel the first time a language is used — so an editable install and the wheel behave
the same and there is no build step to forget. Unknown or unparsable preferences fall back
to English.
"""

from __future__ import annotations

import gettext
from datetime import UTC, datetime
from functools import cache
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError, negotiate_locale
from babel.dates import format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

DEFAULT_LOCALE = "en"
#: Languages with a catalog (plus the source language, English).
SUPPORTED_LOCALES = ("en", "de", "fr", "es", "ja")
DOMAIN = "pages"
LOCALES_DIR = Path(__file__).resolve().parent / "locales"

#: Bounds on what we parse of a client-controlled header.
_MAX_HEADER = 512
_MAX_ENTRIES = 16


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an ``Accept-Language`` header, most preferred first (RFC 9110
    §12.5.4 weights; ``q=0`` and malformed entries dropped; ``*`` ignored)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header[:_MAX_HEADER].split(",")[:_MAX_ENTRIES]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        if not all(part.isalnum() and part.isascii() for part in tag.split("-")):
            continue
        weight = 1.0
        params = params.strip()
        if params:
            name, _, value = params.partition("=")
            if name.strip().lower() != "q":
                continue
            try:
                weight = float(value.strip())
            except ValueError:
                continue
            if not 0 < weight <= 1:
                continue
        weighted.append((-weight, index, tag.replace("-", "_")))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(header: str | None) -> Locale:
    """The supported locale that best matches ``Accept-Language`` (English by default)."""
    chosen = negotiate_locale(parse_accept_language(header), list(SUPPORTED_LOCALES))
    try:
        return Locale.parse(chosen or DEFAULT_LOCALE)
    except (ValueError, UnknownLocaleError):
        return Locale.parse(DEFAULT_LOCALE)


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of ``language`` (English: the identity)."""
    po = LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT_LOCALE or not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def translate(locale: Locale, message: str) -> str:
    """``message`` (an English message id) in ``locale``'s language, placeholders kept."""
    return translations(locale.language).gettext(message)


def relative_time(when: datetime, locale: Locale, now: datetime | None = None) -> str:
    """``when`` relative to now in ``locale``, e.g. "in 4 minutes", "in 4 Minuten"."""
    now = now or datetime.now(UTC)
    return format_timedelta(
        _aware(when) - _aware(now), granularity="second", add_direction=True, locale=locale
    )


def absolute_utc(when: datetime, locale: Locale) -> str:
    """``when`` as a localised date and time in UTC (without the zone name)."""
    return format_datetime(_aware(when), format="medium", tzinfo=UTC, locale=locale)


def _aware(when: datetime) -> datetime:
    # Timestamps read back from SQLite are naive UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
