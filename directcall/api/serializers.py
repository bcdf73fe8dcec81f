"""Shapes of the HTTP API's requests and responses (they also drive the OpenAPI schema).

Field names are camelCase: they are what the JavaScript SDK sends and reads.
Validation itself lives in :mod:`directcall.validation`, shared with the socket.
"""

from __future__ import annotations

from rest_framework import serializers


class InitRequestSerializer(serializers.Serializer):
    """Body of ``POST v1/init`` (documentation only; rules in directcall.validation)."""

    accountId = serializers.CharField(help_text="Direct Call account id (dashboard).")
    apikey = serializers.CharField(help_text="API key of the account, `prefix.secret`.")
    cuid = serializers.CharField(
        help_text="5–50 letters, digits or `_`; case-sensitive; not number_number."
    )
    name = serializers.CharField(required=False, help_text="Display name, 3–50 characters.")
    ringtone = serializers.URLField(required=False, help_text="http(s) URL of the ringtone.")
    ctAccountId = serializers.CharField(
        required=False, help_text="CleverTap account id (`clevertap.getAccountID()`)."
    )
    ctId = serializers.CharField(
        required=False, help_text="CleverTap id (`clevertap.getCleverTapID()`)."
    )
    deviceId = serializers.CharField(
        required=False, help_text="8–64 letters, digits, `_` or `-`, stable per browser."
    )


class IceServerSerializer(serializers.Serializer):
    """An RTCIceServer dict."""

    urls = serializers.ListField(child=serializers.CharField())
    username = serializers.CharField(required=False)
    credential = serializers.CharField(required=False)


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
    name = serializers.CharField()
    deviceId = serializers.CharField()
    iceServers = IceServerSerializer(many=True)
    ringTimeout = serializers.IntegerField(help_text="Seconds before an unanswered call is missed.")
    maxCallDuration = serializers.IntegerField(allow_null=True)
    branding = BrandingSerializer()


class ErrorSerializer(serializers.Serializer):
    """Every error: a documented code and a human-readable message."""

    code = serializers.CharField()
    message = serializers.CharField()
