"""Shapes of the HTTP API's requests and responses (they also drive the OpenAPI schema).

Field names are camelCase: they are what the JavaScript SDK sends and reads. The request
serializers are built from the field tables of :mod:`directcall.validation` and run its
rules as their validators, so the schema and the rules cannot drift apart; the views
validate with ``clean_init_params``/``clean_session_params``, which give the error codes
and messages of the original SDK.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from ..validation import INIT_FIELDS, SESSION_FIELDS, FieldRule, is_blank


class RuleValidator:
    """A rule of :mod:`directcall.validation` as a DRF validator."""

    def __init__(self, name: str, rule: FieldRule) -> None:
        self.name = name
        self.rule = rule

    def __call__(self, value: Any) -> None:
        """Raise a ValidationError when ``value`` breaks the rule."""
        if not self.rule.check(value):
            raise serializers.ValidationError(f"Invalid parameter: {self.name}.", code="invalid")


class RuleField(serializers.CharField):
    """A string field checked by one rule of :mod:`directcall.validation`, nothing else.

    No coercion (a number is not a cuid) and no trimming: the rule sees the value as sent.
    A blank value (None, "" or whitespace) is missing when the field is required and
    absent (None) when it is optional, as in ``clean_init_params``.
    """

    def __init__(self, name: str, rule: FieldRule, **kwargs: Any) -> None:
        super().__init__(
            required=rule.required, allow_null=not rule.required, trim_whitespace=False, **kwargs
        )
        # Only the rule: CharField's own validators would be a second, different rule set.
        self.validators = [RuleValidator(name, rule)]

    def run_validation(self, data: Any = empty) -> Any:
        """Blank: missing or absent; otherwise the value as sent, once the rule passes."""
        if data is empty or is_blank(data):
            if self.required:
                self.fail("required")
            return None
        self.run_validators(data)
        return data


@extend_schema_field(OpenApiTypes.URI)
class RuleURLField(RuleField):
    """A :class:`RuleField` documented as a URI."""


class RuleSerializer(serializers.Serializer):
    """A request body whose fields are a table of :mod:`directcall.validation`.

    ``rules`` gives the fields, their order and whether each is required; ``help_texts``
    documents each one (a rule without a text is an error when the fields are built).
    """

    rules: dict[str, FieldRule] = {}
    help_texts: dict[str, str] = {}
    url_fields: frozenset[str] = frozenset({"ringtone"})

    def get_fields(self) -> dict[str, serializers.Field]:
        """One :class:`RuleField` per rule."""
        return {
            name: (RuleURLField if name in self.url_fields else RuleField)(
                name, rule, help_text=self.help_texts[name]
            )
            for name, rule in self.rules.items()
        }


class InitRequestSerializer(RuleSerializer):
    """Body of ``POST v1/init``; the fields and their rules are ``validation.INIT_FIELDS``.

    An optional field that is null (or blank) counts as not given.
    """

    rules = INIT_FIELDS
    help_texts = {
        "accountId": "Direct Call account id (dashboard).",
        "apikey": "API key of the account, `prefix.secret`.",
        "cuid": "5–50 letters, digits or `_`; case-sensitive; not number_number.",
        "name": "Display name, 3–50 characters.",
        "ringtone": "http(s) URL of the ringtone.",
        "ctAccountId": "CleverTap account id (`clevertap.getAccountID()`).",
        "ctId": "CleverTap id (`clevertap.getCleverTapID()`).",
        "deviceId": "8–64 letters, digits, `_` or `-`, stable per browser.",
        "userToken": "A JWT (HS256) signed by your server with the account's signing secret: "
        "`iss` the account id, `sub` the cuid, `exp` at most one hour ahead, optional `name`, "
        "`image`, `iat`, `jti`. Required by accounts with verified identities; their name "
        "and picture come from it (`name` is then ignored).",
    }


@extend_schema_field(
    {
        "type": "object",
        "description": "An RTCIceServer dict as configured in DIRECTCALL['ICE_SERVERS'], "
        "with `urls` always a list. Every configured key is passed through (for example "
        "`credentialType`).",
        "properties": {
            "urls": {"type": "array", "items": {"type": "string"}},
            "username": {"type": "string"},
            "credential": {"type": "string"},
        },
        "required": ["urls"],
        "additionalProperties": True,
    }
)
class IceServerField(serializers.DictField):
    """An RTCIceServer dict, passed through whole (no key is dropped or reshaped)."""


class SessionRequestSerializer(RuleSerializer):
    """Body of ``POST v1/session`` (the user comes from the Django login).

    The fields and their rules are ``validation.SESSION_FIELDS``. An optional field that
    is null (or blank) counts as not given.
    """

    rules = SESSION_FIELDS
    help_texts = {
        "deviceId": "8–64 letters, digits, `_` or `-`, stable per browser.",
        "ringtone": "http(s) URL of the ringtone.",
        "ctAccountId": "CleverTap account id.",
        "ctId": "CleverTap id.",
    }


class BrandingSerializer(serializers.Serializer):
    """How the call screens look for this account."""

    logoUrl = serializers.CharField(allow_blank=True)
    backgroundColor = serializers.CharField()
    textColor = serializers.CharField()
    buttonTheme = serializers.CharField()


class InitResponseSerializer(serializers.Serializer):
    """Successful init: a session token and everything the SDK needs to place calls."""

    token = serializers.CharField(help_text="Signed session token for the signaling socket.")
    tokenExpiresIn = serializers.IntegerField(help_text="Seconds the token stays valid.")
    websocketUrl = serializers.CharField()
    accountId = serializers.CharField()
    cuid = serializers.CharField()
    name = serializers.CharField(
        help_text="The name this sign-in gave (the cuid when none): the page's `name` for "
        "page identities, the user token's or the adapter's for verified ones."
    )
    image = serializers.URLField(
        allow_null=True,
        help_text="The user's picture from the user token or the adapter (verified "
        "identities), or null.",
    )
    deviceId = serializers.CharField(
        help_text="The deviceId sent, or one generated by the server (stored either way)."
    )
    ringtone = serializers.URLField(
        allow_null=True, help_text="The validated ringtone URL sent at init, or null."
    )
    iceServers = serializers.ListField(child=IceServerField())
    iceTransportPolicy = serializers.ChoiceField(
        choices=["all", "relay"], help_text="RTCPeerConnection iceTransportPolicy."
    )
    ringTimeout = serializers.IntegerField(help_text="Seconds before an unanswered call is missed.")
    maxCallDuration = serializers.IntegerField(allow_null=True)
    branding = BrandingSerializer()


class ErrorSerializer(serializers.Serializer):
    """Every error: a documented code and a human-readable message."""

    code = serializers.CharField()
    message = serializers.CharField()
