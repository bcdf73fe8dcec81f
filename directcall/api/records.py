"""Shapes of calls and registrations in the calls API, the webhooks and the CSV export.

One definition: `GET v1/calls/{id}` returns :class:`CallSerializer`'s object, and the
`call.*` webhooks carry the same object as their `data` (docs/webhooks.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Call, CallStatus, EndReason, Registration

# -- the quality summary of a call (issue 15) ---------------------------------------------
# QUALITY_FIELD names the Call attribute holding the per-call quality summaries, a JSON
# object {"caller": {...}, "callee": {...}} with a side only once it reported
# (directcall.quality); a call without one, or a model without the field, gives null.
# tests/test_api_calls.py (test_quality_is_read_from_the_call) pins this one place.
QUALITY_FIELD = "quality"


def quality_of(call: Call) -> dict[str, Any] | None:
    """The call's quality summary (a JSON object), or None when it has none."""
    value = getattr(call, QUALITY_FIELD, None)
    return value if isinstance(value, dict) and value else None


def seconds(value: timedelta | None) -> float | None:
    """A duration in seconds, to the millisecond (None stays None)."""
    return None if value is None else round(value.total_seconds(), 3)


class PartySerializer(serializers.Serializer):
    """One party of a call: the cuid and the name shown for it."""

    cuid = serializers.CharField()
    name = serializers.CharField(source="display_name")


class CallSerializer(serializers.ModelSerializer):
    """A call as the host's servers see it (`v1/calls`, the `call.*` webhooks)."""

    accountId = serializers.CharField(source="account.account_id")
    status = serializers.ChoiceField(choices=CallStatus.choices)
    reason = serializers.SerializerMethodField()
    caller = PartySerializer()
    callee = PartySerializer()
    createdAt = serializers.DateTimeField(source="created_at")
    answeredAt = serializers.DateTimeField(source="answered_at", allow_null=True)
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    duration = serializers.SerializerMethodField()
    quality = serializers.SerializerMethodField()

    class Meta:
        model = Call
        fields = [
            "id",
            "accountId",
            "status",
            "reason",
            "context",
            "caller",
            "callee",
            "createdAt",
            "answeredAt",
            "endedAt",
            "duration",
            "quality",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=EndReason.choices, allow_null=True))
    def get_reason(self, call: Call) -> str | None:
        """Why it ended (an end reason), null while live."""
        return call.end_reason or None

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration(self, call: Call) -> float | None:
        """Talk time in seconds of an answered call that ended; null otherwise."""
        return seconds(call.duration)

    @extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
    def get_quality(self, call: Call) -> dict[str, Any] | None:
        """The call's quality summary, null when there is none."""
        return quality_of(call)


class MyCallSerializer(serializers.ModelSerializer):
    """A call as one of its parties sees it (`v1/me/calls`)."""

    direction = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=CallStatus.choices)
    reason = serializers.SerializerMethodField()
    otherParty = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    answeredAt = serializers.DateTimeField(source="answered_at", allow_null=True)
    endedAt = serializers.DateTimeField(source="ended_at", allow_null=True)
    duration = serializers.SerializerMethodField()

    class Meta:
        model = Call
        fields = [
            "id",
            "direction",
            "status",
            "reason",
            "context",
            "otherParty",
            "createdAt",
            "answeredAt",
            "endedAt",
            "duration",
        ]

    def _mine(self, call: Call) -> bool:
        return call.caller_id == self.context["registration_pk"]

    @extend_schema_field(serializers.ChoiceField(choices=["outgoing", "incoming"]))
    def get_direction(self, call: Call) -> str:
        """`outgoing` when this user placed the call, `incoming` otherwise."""
        return "outgoing" if self._mine(call) else "incoming"

    @extend_schema_field(serializers.ChoiceField(choices=EndReason.choices, allow_null=True))
    def get_reason(self, call: Call) -> str | None:
        """Why it ended (an end reason), null while live."""
        return call.end_reason or None

    @extend_schema_field(PartySerializer)
    def get_otherParty(self, call: Call) -> dict[str, str]:
        """The other party's cuid and display name."""
        other = call.callee if self._mine(call) else call.caller
        return {"cuid": other.cuid, "name": other.display_name}

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_duration(self, call: Call) -> float | None:
        """Talk time in seconds of an answered call that ended; null otherwise."""
        return seconds(call.duration)


class RegistrationSerializer(serializers.ModelSerializer):
    """A cuid of the account (`v1/registrations/{cuid}`, `registration.created`)."""

    accountId = serializers.CharField(source="account.account_id")
    name = serializers.CharField(source="display_name")
    image = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")
    lastSeenAt = serializers.DateTimeField(source="last_seen_at")

    class Meta:
        model = Registration
        fields = ["accountId", "cuid", "name", "image", "createdAt", "lastSeenAt"]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_image(self, registration: Registration) -> str | None:
        """The registration's picture (from the Django user or the user token), or null."""
        return registration.image_url or None
