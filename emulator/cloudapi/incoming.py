"""Recognise a cloud API call on `/` and read its common parameters, whichever signature it uses.

TC3-HMAC-SHA256 calls carry `Action`, `Version`, `Region` and `Language` in `X-TC-*` headers
and the action's parameters as a JSON body (POST) or a query string (GET). Calls signed the
older way (v1, `HmacSHA1`/`HmacSHA256`, as tccli sends them) carry everything, common
parameters included, as form parameters in the body (POST) or the query string (GET).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

from emulator.cloudapi import errors, params, sign_v1

Style = Literal["tc3", "v1", "unknown"]
LANGUAGES = frozenset({"zh-CN", "en-US"})
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# Any of these among the form parameters marks a v1-signed call.
_V1_MARKERS = ("Action", "Signature", "SignatureMethod", "SecretId")


@dataclass(frozen=True)
class IncomingCall:
    """One request to `/`, read but not yet verified or validated."""

    style: Style
    method: str
    headers: Mapping[str, str]  # lowercased names
    query_string: bytes
    body: bytes
    form: Mapping[str, str]  # v1: every parameter as sent; empty otherwise

    @property
    def action(self) -> str:
        return self._common("Action")

    @property
    def version(self) -> str:
        return self._common("Version")

    @property
    def region(self) -> str:
        return self._common("Region")

    @property
    def language(self) -> str | None:
        if self.style == "v1":
            return self.form.get("Language")
        return self.headers.get("x-tc-language")

    @property
    def host(self) -> str:
        return self.headers.get("host", "")

    @property
    def params_from_query(self) -> bool:
        """True when the action's parameters are text to convert (query or form), not JSON."""
        return self.style == "v1" or self.method != "POST"

    def _common(self, name: str) -> str:
        if self.style == "v1":
            return self.form.get(name, "").strip()
        return self.headers.get("x-tc-" + name.lower(), "").strip()

    def check_common(self, *, strict: bool) -> str:
        """Check Action, Version, Language (and Region when strict); return the action.

        Each MissingParameter names the parameter as this call's signature style spells it.
        """
        prefix = "X-TC-" if self.style == "tc3" else ""
        if self.style == "unknown" or not self.action:
            raise errors.missing_parameter(prefix + "Action")
        if not self.version:
            raise errors.missing_parameter(prefix + "Version")
        if self.version != params.API_VERSION:
            raise errors.no_such_version(self.version)
        if self.action not in params.ACTIONS:
            raise errors.invalid_action(self.action)
        if self.language is not None and self.language not in LANGUAGES:
            raise errors.invalid_value(prefix + "Language", self.language, "must be zh-CN or en-US")
        if strict and not self.region:
            raise errors.missing_parameter(prefix + "Region")
        return self.action

    def action_params(self) -> Any:
        """The action's own parameters, before type checks (strings when from a query/form)."""
        if self.style == "v1":
            pairs = ((k, v) for k, v in self.form.items() if k not in sign_v1.COMMON_PARAMS)
            return params.unflatten(pairs)
        if self.method != "POST":
            return params.parse_query(self.query_string.decode("utf-8", errors="replace"))
        return _json_object(self.body)


def is_cloud_call(method: str, header_names: Iterable[str], query_string: bytes) -> bool:
    """A POST to `/`, or any request carrying Authorization, an X-TC-* header or `Action`."""
    if method == "POST":
        return True
    lowered = {name.lower() for name in header_names}
    if "authorization" in lowered or any(name.startswith("x-tc-") for name in lowered):
        return True
    return any(key == "Action" for key, _ in _pairs(query_string))


def read_call(
    method: str, headers: Mapping[str, str], query_string: bytes, body: bytes
) -> IncomingCall:
    """Classify the request by its signature style and collect its v1 form parameters."""
    lowered = {name.lower(): value for name, value in headers.items()}
    form: dict[str, str] = {}
    style: Style = "unknown"
    if "authorization" in lowered:
        style = "tc3"
    else:
        # v1 clients may send X-TC-* headers too (the newest Node.js SDK adds X-TC-TraceId),
        # so their form parameters decide first.
        form = _form(method, lowered, query_string, body)
        if any(marker in form for marker in _V1_MARKERS):
            style = "v1"
        else:
            form = {}
            if any(name.startswith("x-tc-") for name in lowered):
                style = "tc3"
    return IncomingCall(
        style=style,
        method=method.upper(),
        headers=lowered,
        query_string=query_string,
        body=body,
        form=form,
    )


def _form(
    method: str, headers: Mapping[str, str], query_string: bytes, body: bytes
) -> dict[str, str]:
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    is_form = content_type in ("", FORM_CONTENT_TYPE)
    pairs = _pairs(body if method.upper() == "POST" and body.strip() and is_form else query_string)
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise errors.invalid_parameter(f"The parameter `{key}` is given twice.")
        form[key] = value
    return form


def _pairs(raw: bytes) -> list[tuple[str, str]]:
    return parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)


def _json_object(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise errors.invalid_parameter(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(parsed, dict):
        raise errors.invalid_parameter("The request body must be a JSON object.")
    return parsed
