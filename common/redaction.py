"""Secrets out of everything the suite prints or records: one `redact()` for banners, errors, MLflow
params and tags.

A database or storage URI may carry a password in its user info (`postgresql://user:PASSWORD@host/db`,
where a password with `/`, `#` or `?` breaks URL parsing, so this does not parse) or in its query
(`?password=...`, `&sslpassword=`, `token=`...). `redact` finds every URI-shaped run of text and hides
both, leaving the rest readable (`postgresql://user:***@host/db`).
"""
from __future__ import annotations

import re

HIDDEN = "***"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_QUERY = re.compile(r"([?&;](?:[\w.-]*password|passwd|pwd|secret|token|access_key|secret_key|api_key)=)"
                           r"[^&;#\s'\"]*", re.IGNORECASE)


def redact(text: object) -> str:
    """`text` with every password and secret query value in a URI replaced by ***."""
    return _URI.sub(lambda match: _redact_uri(match.group(0)), str(text))


def _redact_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    at = rest.rfind("@")
    if at > 0:
        userinfo, host = rest[:at], rest[at + 1:]
        user, colon, _ = userinfo.partition(":")
        if colon:
            rest = f"{user}:{HIDDEN}@{host}"
    return _SECRET_QUERY.sub(lambda m: m.group(1) + HIDDEN, f"{scheme}://{rest}")
