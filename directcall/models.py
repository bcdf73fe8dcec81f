"""Accounts, the cuids registered under them, and the record of every call."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models
from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .conf import get_settings

API_KEY_PREFIX_LENGTH = 12
# Server keys (the calls API, docs/api.md#calls-api): ``dcsk_<prefix>.<secret>``.
SERVER_KEY_MARK = "dcsk_"
_SERVER_KEY_FIELDS = ("server_key_prefix", "server_key_hash", "server_key_created_at")
_KEY_FIELDS = ("key_prefix", "key_hash", "key_created_at", "key_revoked_at")
_SIGNING_FIELDS = ("signing_secret", "signing_secret_created_at")
# The fields whose change may revoke live sessions (directcall.receivers compares them).
WATCHED_FIELDS = ("is_active", "identity", "key_hash", "key_revoked_at", "signing_secret")
_hex_colour = RegexValidator(r"^#[0-9a-fA-F]{6}$", _("Enter a colour as #rrggbb."))
_origin_url = URLValidator(schemes=["http", "https"])


def _new_account_id() -> str:
    return secrets.token_hex(10)


def new_signing_secret() -> str:
    """A random signing secret for user tokens: 256 bits, URL-safe text."""
    return secrets.token_urlsafe(32)


def hash_api_key_secret(secret: str) -> str:
    """SHA-256 of a key's secret part.

    Keys are 256 random bits, so a fast hash is enough (no dictionary to slow down),
    and it keeps the init endpoint cheap — the same choice as djangorestframework-api-key.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def normalise_origin(entry: str) -> str | None:
    """Return ``entry`` as a lower-case ``scheme://host[:port]``, or None if it is no origin.

    The scheme must be http or https; a trailing ``/`` is dropped. A path, a query, a
    fragment, user info, a wildcard or a port out of range make it no origin.
    """
    try:
        _origin_url(entry)
        parts = urlsplit(entry)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except (ValidationError, ValueError):
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        return None
    if entry.endswith(("?", "#")):
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def split_server_key(server_key: str) -> tuple[str, str]:
    """Split ``dcsk_prefix.secret``; anything else gives empty parts (never matches)."""
    if not server_key.startswith(SERVER_KEY_MARK):
        return ("", "")
    return split_api_key(server_key.removeprefix(SERVER_KEY_MARK))


def split_api_key(api_key: str) -> tuple[str, str]:
    """Split ``prefix.secret``; a key without a dot gives an empty prefix (never matches)."""
    prefix, dot, secret = api_key.partition(".")
    return (prefix, secret) if dot else ("", "")


class Identity(models.TextChoices):
    """How an account's users prove who they are (docs/accounts.md#identity-modes)."""

    # Only identities the host vouches for: the Django login (v1/session) or a user token
    # signed with the account's signing secret by the host's backend.
    VERIFIED = "verified", _("verified (Django session or signed user token)")
    # The original SDK's contract: the page's API key and cuid are taken at their word.
    PAGE = "page", _("page (API key and cuid taken at their word)")


class Account(models.Model):
    """A calling account: its public id, hashed API key, switches and branding."""

    class ButtonTheme(models.TextChoices):
        STANDARD = "standard", _("Standard (green answer, red hang up)")
        LIGHT = "light", _("Light")
        DARK = "dark", _("Dark")

    account_id = models.CharField(
        _("account id"), max_length=64, unique=True, default=_new_account_id, editable=False
    )
    name = models.CharField(_("name"), max_length=100)
    is_active = models.BooleanField(_("active"), default=True)
    identity = models.CharField(
        _("identity"),
        max_length=16,
        choices=Identity,
        default=Identity.VERIFIED,
        help_text=_(
            "Verified: users sign in through the Django login or a user token your server "
            "signs. Page: any page with the API key may sign in as any cuid."
        ),
    )
    require_clevertap = models.BooleanField(
        _("require CleverTap"),
        default=True,
        help_text=_("Clients must report a CleverTap account id and CleverTap id at init."),
    )
    allowed_origins = models.TextField(
        _("allowed origins"),
        blank=True,
        help_text=_(
            "One origin per line, e.g. https://shop.example.com. Empty allows every origin."
        ),
    )
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    key_created_at = models.DateTimeField(_("key created"), default=timezone.now, editable=False)
    key_revoked_at = models.DateTimeField(_("key revoked"), null=True, blank=True, editable=False)
    # Kept as it is, not hashed: verifying a user token's HMAC needs the secret itself.
    signing_secret = models.CharField(max_length=64, blank=True, editable=False)
    signing_secret_created_at = models.DateTimeField(
        _("signing secret created"), null=True, blank=True, editable=False
    )
    # The key of the host's servers for the calls API; never in a page (the API key is).
    # Null until one is issued (unique, and several accounts may have none).
    server_key_prefix = models.CharField(
        max_length=16, unique=True, null=True, blank=True, editable=False
    )
    server_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    server_key_created_at = models.DateTimeField(
        _("server key created"), null=True, blank=True, editable=False
    )
    # Whether the account has an active webhook endpoint, kept by directcall.webhooks
    # when endpoints change: a call of an account without one costs no webhook query.
    has_webhooks = models.BooleanField(_("has webhooks"), default=False, editable=False)

    logo_url = models.URLField(_("logo URL"), max_length=2048, blank=True)
    background_color = models.CharField(
        _("background colour"), max_length=7, default="#1f2933", validators=[_hex_colour]
    )
    text_color = models.CharField(
        _("text colour"), max_length=7, default="#ffffff", validators=[_hex_colour]
    )
    button_theme = models.CharField(
        _("button theme"), max_length=16, choices=ButtonTheme, default=ButtonTheme.STANDARD
    )
    ring_timeout = models.PositiveIntegerField(
        _("ring timeout (s)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Overrides DIRECTCALL['RING_TIMEOUT'] for this account. Empty: use the setting."
        ),
    )
    max_call_duration = models.PositiveIntegerField(
        _("maximum call duration (s)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Overrides DIRECTCALL['MAX_CALL_DURATION'] for this account. Empty: use the setting."
        ),
    )
    ask_feedback = models.BooleanField(
        _("ask for feedback"),
        default=False,
        help_text=_(
            "After an answered call, the call screens ask each party to rate it (1 to 5 "
            "and what went wrong); ratings are kept with the call. Also allows "
            "client.postFeedback()."
        ),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"

    def save(self, *args, **kwargs) -> None:
        """Save; an account without a key first gets one that nobody is shown.

        ``key_prefix`` is unique, so a second keyless account would otherwise collide on
        the empty prefix. The key is discarded: the account needs a rotation before use.
        """
        if not self.key_hash:
            self.set_new_api_key()
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, *_KEY_FIELDS}
        if self._state.adding and not self.signing_secret:
            # Like the key: a new account always has a secret; this one nobody is shown.
            self.set_new_signing_secret()
        update_fields = kwargs.get("update_fields")
        if not self._state.adding and (update_fields is None or "has_webhooks" in update_fields):
            # Read again rather than written back from a copy loaded before an endpoint
            # changed (directcall.webhooks.receivers keeps it otherwise).
            self.has_webhooks = self.webhook_endpoints.filter(is_active=True).exists()
        super().save(*args, **kwargs)

    @classmethod
    def from_db(cls, db, field_names, values):
        """Load a row and remember the watched fields, so a save can tell what changed."""
        instance = super().from_db(db, field_names, values)
        instance._loaded = {
            name: getattr(instance, name)
            for name in WATCHED_FIELDS
            if name in instance.__dict__  # deferred fields are not loaded
        }
        return instance

    def clean(self) -> None:
        """Check the allowed origins (stored normalised) and the session account's identity."""
        super().clean()
        session_account = get_settings().SESSION_ACCOUNT
        if (
            session_account
            and self.account_id == session_account
            and self.identity == Identity.PAGE
        ):
            raise ValidationError(
                {
                    "identity": _(
                        "This is DIRECTCALL['SESSION_ACCOUNT']: its users are the site's "
                        "logged-in users, so it cannot take page identities."
                    )
                }
            )
        entries = self.allowed_origins.split()
        bad = [entry for entry in entries if normalise_origin(entry) is None]
        if bad:
            raise ValidationError(
                {
                    "allowed_origins": _(
                        "Not an origin (write http(s)://host[:port], without a path): %(bad)s"
                    )
                    % {"bad": ", ".join(bad)}
                }
            )
        self.allowed_origins = "\n".join(normalise_origin(entry) for entry in entries)

    # -- API key ------------------------------------------------------------------------

    def set_new_api_key(self) -> str:
        """Give the account a fresh key and return it; only its hash is kept. Call save()."""
        prefix = secrets.token_hex(API_KEY_PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        self.key_prefix = prefix
        self.key_hash = hash_api_key_secret(secret)
        self.key_created_at = timezone.now()
        self.key_revoked_at = None
        return f"{prefix}.{secret}"

    def rotate_api_key(self) -> str:
        """Replace the key (the old one stops working at once) and return the new one."""
        key = self.set_new_api_key()
        self.save(update_fields=list(_KEY_FIELDS))
        return key

    def revoke_api_key(self) -> None:
        """Make the current key unusable until the next rotation."""
        self.key_revoked_at = timezone.now()
        self.save(update_fields=["key_revoked_at"])

    def set_new_signing_secret(self) -> str:
        """Give the account a fresh user-token signing secret and return it. Call save()."""
        self.signing_secret = new_signing_secret()
        self.signing_secret_created_at = timezone.now()
        return self.signing_secret

    def rotate_signing_secret(self) -> str:
        """Replace the signing secret (tokens signed with the old one stop working at once)."""
        secret = self.set_new_signing_secret()
        self.save(update_fields=list(_SIGNING_FIELDS))
        return secret

    def set_new_server_key(self) -> str:
        """Give the account a fresh server key and return it; only its hash is kept."""
        prefix = secrets.token_hex(API_KEY_PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        self.server_key_prefix = prefix
        self.server_key_hash = hash_api_key_secret(secret)
        self.server_key_created_at = timezone.now()
        return f"{SERVER_KEY_MARK}{prefix}.{secret}"

    def rotate_server_key(self) -> str:
        """Replace the server key (the old one stops working at once) and return the new one."""
        key = self.set_new_server_key()
        self.save(update_fields=list(_SERVER_KEY_FIELDS))
        return key

    def revoke_server_key(self) -> None:
        """Remove the server key: the calls API refuses every key until a new one is issued."""
        self.server_key_prefix = None
        self.server_key_hash = ""
        self.server_key_created_at = None
        self.save(update_fields=list(_SERVER_KEY_FIELDS))

    def check_server_key(self, secret: str) -> bool:
        """Compare the secret part of a presented server key with the hash, in constant time."""
        matches = hmac.compare_digest(hash_api_key_secret(secret), self.server_key_hash)
        return matches and bool(self.server_key_hash)

    @property
    def is_verified(self) -> bool:
        """Whether the account takes only identities the host vouches for."""
        return self.identity == Identity.VERIFIED

    @property
    def key_is_revoked(self) -> bool:
        """Whether the current key has been revoked."""
        return self.key_revoked_at is not None

    def check_api_key(self, api_key: str) -> bool:
        """Compare a presented key with the stored hash in constant time."""
        prefix, secret = split_api_key(api_key)
        # Bytes, not str: compare_digest raises TypeError on non-ASCII strings.
        prefix_ok = hmac.compare_digest(prefix.encode(), self.key_prefix.encode())
        secret_ok = hmac.compare_digest(hash_api_key_secret(secret), self.key_hash)
        return prefix_ok and secret_ok and bool(self.key_hash) and not self.key_is_revoked

    # -- origins and effective settings -------------------------------------------------

    @property
    def origin_list(self) -> list[str]:
        """The allowed origins, normalised to ``scheme://host[:port]`` without a slash."""
        return [line.strip().rstrip("/").lower() for line in self.allowed_origins.split() if line]

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request from ``origin`` may use this account (empty list: any origin)."""
        allowed = self.origin_list
        if not allowed:
            return True
        if not origin:
            return False
        return origin.rstrip("/").lower() in allowed

    def effective_ring_timeout(self) -> int:
        """The ring timeout for this account's calls, in seconds (null field: the setting)."""
        if self.ring_timeout is not None:
            return self.ring_timeout
        return get_settings().RING_TIMEOUT

    def effective_max_call_duration(self) -> int | None:
        """The maximum duration of answered calls, in seconds (None: no limit).

        The account's own value when set, otherwise ``DIRECTCALL["MAX_CALL_DURATION"]``.
        """
        if self.max_call_duration is not None:
            return self.max_call_duration
        return get_settings().MAX_CALL_DURATION

    def branding(self) -> dict[str, str]:
        """The branding the call screens use."""
        return {
            "logoUrl": self.logo_url,
            "backgroundColor": self.background_color,
            "textColor": self.text_color,
            "buttonTheme": self.button_theme,
        }


class Registration(models.Model):
    """A cuid signed in under an account, with what its client last reported."""

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="registrations", verbose_name=_("account")
    )
    cuid = models.CharField(_("cuid"), max_length=50)
    name = models.CharField(_("display name"), max_length=50, blank=True)
    ct_account_id = models.CharField(_("CleverTap account id"), max_length=64, blank=True)
    ct_id = models.CharField(_("CleverTap id"), max_length=128, blank=True)
    device_id = models.CharField(_("last device id"), max_length=64, blank=True)
    # From the Django user (the adapter) or the user token; never from the page.
    image_url = models.URLField(_("picture"), max_length=2048, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)

    class Meta:
        verbose_name = _("registration")
        verbose_name_plural = _("registrations")
        ordering = ["account", "cuid"]
        constraints = [
            models.UniqueConstraint(fields=["account", "cuid"], name="directcall_unique_cuid")
        ]

    def __str__(self) -> str:
        return self.cuid

    @property
    def display_name(self) -> str:
        """The name shown to the other party (the cuid when no name was given)."""
        return self.name or self.cuid


class CallStatus(models.TextChoices):
    """Where a call stands. The first three are live; the rest are final."""

    INITIATED = "initiated", _("initiated")
    RINGING = "ringing", _("ringing")
    ANSWERED = "answered", _("answered")
    OVER = "over", _("over")
    DECLINED = "declined", _("declined")
    MISSED = "missed", _("missed")
    CANCELLED = "cancelled", _("cancelled")
    BUSY = "busy", _("busy")
    FAILED = "failed", _("failed")


LIVE_STATUSES = (CallStatus.INITIATED, CallStatus.RINGING, CallStatus.ANSWERED)
# Waiting for the callee: only these may be accepted, declined, cancelled or missed.
RINGING_STATUSES = (CallStatus.INITIATED, CallStatus.RINGING)
FINAL_STATUSES = tuple(s for s in CallStatus if s not in LIVE_STATUSES)


class EndReason(models.TextChoices):
    """Why a call ended (the hangup reasons of docs/protocol.md)."""

    USER_HANGUP = "user_hangup", _("user hung up")
    INVITE_TIMEOUT = "invite_timeout", _("not answered in time")
    ICE_FAILED = "ice_failed", _("media connection failed")
    USER_MEDIA_FAILED = "user_media_failed", _("microphone unavailable")
    USER_BUSY = "user_busy", _("receiver busy")
    USER_DECLINED = "user_declined", _("receiver declined")
    CALLER_CANCELLED = "caller_cancelled", _("caller cancelled")
    CONNECTION_LOST = "connection_lost", _("connection lost")
    MAX_DURATION = "max_duration", _("maximum duration reached")
    # The session was revoked (logout, account deactivated, key or secret rotated,
    # registration deleted): directcall.revocation.
    REVOKED = "revoked", _("session revoked")


class CallQuerySet(models.QuerySet):
    """Queries over calls."""

    def live(self) -> CallQuerySet:
        """Calls not yet in a final state."""
        return self.filter(status__in=LIVE_STATUSES)

    def answered(self) -> CallQuerySet:
        """Calls in progress."""
        return self.filter(status=CallStatus.ANSWERED)

    def ended(self) -> CallQuerySet:
        """Calls in a final state."""
        return self.filter(status__in=FINAL_STATUSES)

    def involving(self, registration: Registration) -> CallQuerySet:
        """Calls in which ``registration`` is caller or callee."""
        return self.filter(Q(caller=registration) | Q(callee=registration))

    def overdue(self, now: datetime) -> CallQuerySet:
        """Live calls whose deadline has passed."""
        return self.live().filter(deadline__lt=now)

    def with_talk_time(self) -> CallQuerySet:
        """Annotate ``talk_time`` (ended - answered; null for unanswered calls)."""
        return self.annotate(
            talk_time=ExpressionWrapper(
                F("ended_at") - F("answered_at"), output_field=DurationField()
            )
        )


class Call(models.Model):
    """One call attempt between two registrations of the same account."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="calls", verbose_name=_("account")
    )
    caller = models.ForeignKey(
        Registration, on_delete=models.CASCADE, related_name="+", verbose_name=_("caller")
    )
    callee = models.ForeignKey(
        Registration, on_delete=models.CASCADE, related_name="+", verbose_name=_("callee")
    )
    context = models.CharField(_("context"), max_length=280)
    caller_image = models.URLField(_("initiator image"), max_length=2048, blank=True)
    receiver_image = models.URLField(_("receiver image"), max_length=2048, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=CallStatus, default=CallStatus.INITIATED, db_index=True
    )
    end_reason = models.CharField(_("end reason"), max_length=32, choices=EndReason, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    # When the server must act on a live call: the ring deadline while it rings, the
    # maximum duration once answered (null: no limit). Indexed for the sweep.
    deadline = models.DateTimeField(_("deadline"), null=True, blank=True, db_index=True)
    # sha256 of the call key given to the tab that holds the call on each side (the
    # caller's inviting tab, the callee's accepting tab): a page that reloads or navigates
    # presents the key to get the call back (docs/protocol.md). Empty until there is one.
    caller_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    callee_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    # What each party's browser measured, reported once per side after an answered call
    # (directcall.quality): {"caller": {...}, "callee": {...}}, a side absent until it
    # reported. The three fields after it are read from it for the dashboard.
    quality = models.JSONField(_("quality"), null=True, blank=True, editable=False)
    quality_mos = models.FloatField(
        _("MOS"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("The lower of the parties' average MOS (1 to 4.5)."),
    )
    quality_relayed = models.BooleanField(
        _("relayed through TURN"), null=True, blank=True, editable=False
    )
    quality_warned = models.BooleanField(
        _("quality warnings"), null=True, blank=True, editable=False
    )

    objects = CallQuerySet.as_manager()

    class Meta:
        verbose_name = _("call")
        verbose_name_plural = _("calls")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["account", "created_at"])]

    def __str__(self) -> str:
        return f"{self.caller} → {self.callee} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        """Talk time of an answered call that has ended (None otherwise)."""
        if self.answered_at and self.ended_at:
            return self.ended_at - self.answered_at
        return None


class FeedbackIssue(models.TextChoices):
    """What went wrong in a call, as a party's feedback says (Twilio's ``postFeedback`` issues)."""

    AUDIO_LATENCY = "audio-latency", _("audio delay")
    CHOPPY_AUDIO = "choppy-audio", _("choppy audio")
    DROPPED_CALL = "dropped-call", _("dropped call")
    ECHO = "echo", _("echo")
    NOISY_CALL = "noisy-call", _("noisy call")
    ONE_WAY_AUDIO = "one-way-audio", _("one-way audio")


class CallFeedback(models.Model):
    """A party's rating of an answered call (1 to 5) and the issues it names.

    One per party and call; a second rating from the same party replaces the first.
    """

    class Role(models.TextChoices):
        CALLER = "caller", _("caller")
        CALLEE = "callee", _("callee")

    call = models.ForeignKey(
        Call, on_delete=models.CASCADE, related_name="feedback", verbose_name=_("call")
    )
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="+", verbose_name=_("account")
    )
    registration = models.ForeignKey(
        Registration, on_delete=models.CASCADE, related_name="+", verbose_name=_("from")
    )
    role = models.CharField(_("role"), max_length=8, choices=Role)
    score = models.PositiveSmallIntegerField(
        _("score"), validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    issues = models.JSONField(_("issues"), default=list, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("call feedback")
        verbose_name_plural = _("call feedback")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["call", "role"], name="directcall_unique_feedback")
        ]

    def __str__(self) -> str:
        return f"{self.score}/5 from {self.registration}"

    @property
    def issue_labels(self) -> list[str]:
        """The issues in words (unknown values as they are)."""
        labels = dict(FeedbackIssue.choices)
        return [str(labels.get(issue, issue)) for issue in self.issues or []]


class Block(models.Model):
    """A registration that refuses calls from another of its account (the ``block`` frame).

    One way: ``blocked`` can no longer call ``blocker`` (the invite is refused with
    ``ERR_CALL_NOT_ALLOWED``, like a ``can_call`` refusal); ``blocker`` may still call it.
    """

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="blocks", verbose_name=_("account")
    )
    blocker = models.ForeignKey(
        Registration,
        on_delete=models.CASCADE,
        related_name="blocks_made",
        verbose_name=_("blocked by"),
    )
    blocked = models.ForeignKey(
        Registration,
        on_delete=models.CASCADE,
        related_name="blocked_by",
        verbose_name=_("blocked caller"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="directcall_unique_block")
        ]

    def __str__(self) -> str:
        return f"{self.blocker} blocks {self.blocked}"


# The webhook models live in their own module (directcall.webhooks); imported here so that
# they are registered with the app.
from .webhooks.models import (  # noqa: E402, F401
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)
