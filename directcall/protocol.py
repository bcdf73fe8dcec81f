"""The signaling protocol's shapes (docs/protocol.md): parsing and checking the frames a
browser sends, building the frames it receives, and the ``dc.*`` messages the server's
processes send each other through the channel layer.

Nothing here does I/O: every function takes values and returns values (or raises
:class:`~directcall.errors.DirectCallError` for a frame that breaks the rules).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import errors, quality
from .errors import DirectCallError
from .models import Call, EndReason
from .validation import CallParams, clean_call_params, is_valid_cuid

# Close codes (4000-4999 are the application's).
CLOSE_AUTH_FAILED = 4001
CLOSE_ALREADY_SIGNEDIN = 4002
CLOSE_IDLE = 4008
CLOSE_REVOKED = 4011  # the session was revoked (directcall.revocation)
CLOSE_RATE_LIMITED = 4012  # too many sign-ins from this address or for this cuid
# RFC 6455 "going away": the browser leaves the page (a reload, a link, a closed tab).
CLOSE_GOING_AWAY = 1001
CLOSE_NORMAL = 1000  # the SDK's logout()
# RFC 6455 "internal error": the server cannot serve this connection now (Redis or the
# database is unreachable); the SDK reconnects with backoff.
CLOSE_UNAVAILABLE = 1011
# RFC 6455 "message too big": a frame over MAX_AUTH_FRAME_BYTES before the socket signed in.
CLOSE_FRAME_TOO_LARGE = 1009
# Too many sockets from the client's address on this server process (MAX_CONNECTIONS_PER_IP).
CLOSE_TOO_MANY_CONNECTIONS = 4029

# Frames a browser may send, in the order docs/protocol.md lists them.
CLIENT_FRAMES = (
    "auth",
    "ping",
    "invite",
    "ringing",
    "accept",
    "decline",
    "cancel",
    "hangup",
    "block",
    "watch",
    "unwatch",
    "candidates",
    "renegotiate",
    "leaving",
    "quality",
    "feedback",
)

MAX_SDP_CHARS = 32_768
MAX_CANDIDATES = 64
MAX_CANDIDATE_CHARS = 1024
MAX_RESUME = 8
# Largest frame before the socket has signed in, checked before any parsing: an auth frame
# (token, device key, up to MAX_RESUME call keys) is about 1 KB; a stranger gets no more.
MAX_AUTH_FRAME_BYTES = 4096
HANGUP_REASONS = frozenset(
    {EndReason.USER_HANGUP, EndReason.ICE_FAILED, EndReason.USER_MEDIA_FAILED}
)
DECLINE_REASONS = frozenset(
    {EndReason.USER_DECLINED, EndReason.USER_MEDIA_FAILED, EndReason.USER_BUSY}
)


# -- frames from the browser -----------------------------------------------------------------


def decode(text_data: str | None, bytes_data: bytes | None, max_bytes: int) -> Any:
    """The JSON value of a text frame of at most ``max_bytes`` bytes of UTF-8 text."""
    if text_data is None:
        raise DirectCallError(errors.BAD_FRAME, "Binary frames are not accepted.")
    if exceeds(text_data, max_bytes):
        raise DirectCallError(errors.FRAME_TOO_LARGE, f"Frames are limited to {max_bytes} bytes.")
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):
        raise DirectCallError(errors.BAD_FRAME, "The frame is not JSON.") from None
    if _may_hold_surrogates(text_data) and not _is_text(frame):
        error = DirectCallError(errors.BAD_FRAME, "The frame is not UTF-8 text.")
        # The reply still names the frame (its ref and call id, where those are text), so
        # that a client waiting on that ref hears about it.
        error.frame = (
            {key: value for key, value in frame.items() if key in _ECHOED and _is_text(value)}
            if isinstance(frame, dict)
            else None
        )
        raise error
    return frame


def exceeds(text_data: str | None, max_bytes: int) -> bool:
    """Whether a text frame is longer than ``max_bytes`` bytes of UTF-8 (without parsing it)."""
    if text_data is None:
        return False
    # The length in characters first (never more than in bytes): a huge frame costs no
    # encoding; nor does a short one (a character is at most 4 bytes of UTF-8).
    length = len(text_data)
    if length > max_bytes:
        return True
    return length * 4 > max_bytes and len(text_data.encode("utf-8", "surrogatepass")) > max_bytes


def frame_type(frame: Any) -> str:
    """The frame's ``type``, if it is an object of a type on the allow-list."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    if not isinstance(kind, str) or kind not in CLIENT_FRAMES:
        raise DirectCallError(errors.BAD_FRAME, "Unknown or missing frame type.")
    return kind


_ECHOED = ("ref", "call_id", "type")
# A lone surrogate can only come from a "\ud800"-style escape (or, from a server that let
# one through, the character itself): frames without either skip _is_text's second
# JSON encoding of the whole frame.
_MAY_HOLD_SURROGATES = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _may_hold_surrogates(text: str) -> bool:
    """Whether ``text`` holds a lone-surrogate escape or character (_MAY_HOLD_SURROGATES).

    An ASCII string (a flag of the string, no scan) holds no surrogate character, and an
    escape needs a backslash-u: the usual frame is settled by one substring search instead
    of the regular expression, which cost ~13 µs per 1.4 KiB SDP (2 µs for a candidate).
    """
    if text.isascii():
        return "\\u" in text and _MAY_HOLD_SURROGATES.search(text) is not None
    return _MAY_HOLD_SURROGATES.search(text) is not None


def _is_text(frame: Any) -> bool:
    """No lone surrogate anywhere: a "\\ud800" escape parses, but is no UTF-8 text."""
    try:
        json.dumps(frame, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def as_call_id(value: Any) -> str | None:
    """A call id in canonical form, or None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def call_id_of(frame: dict[str, Any]) -> str:
    """The frame's ``call_id``."""
    call_id = as_call_id(frame.get("call_id"))
    if call_id is None:
        raise DirectCallError(errors.BAD_FRAME, "Field 'call_id' must be a call id.")
    return call_id


def sdp_of(frame: dict[str, Any]) -> str:
    """The frame's ``sdp``: a non-empty string within the size limit."""
    sdp = frame.get("sdp")
    if not isinstance(sdp, str) or not sdp or len(sdp) > MAX_SDP_CHARS:
        raise DirectCallError(errors.BAD_FRAME, "Field 'sdp' must be an SDP string.")
    return sdp


def block_of(frame: dict[str, Any]) -> str:
    """The cuid a ``block`` frame names."""
    cuid = frame.get("cuid")
    if not is_valid_cuid(cuid):
        raise DirectCallError(errors.BAD_FRAME, "Field 'cuid' must be a cuid.")
    return cuid


def cuids_of(frame: dict[str, Any], limit: int, required: bool = True) -> list[str] | None:
    """The ``cuids`` of a ``watch`` or ``unwatch`` frame: at most ``limit`` distinct cuids,
    in order; None when the field is absent and not ``required`` (``unwatch`` of all)."""
    cuids = frame.get("cuids")
    if cuids is None and not required:
        return None
    if not isinstance(cuids, list) or not all(is_valid_cuid(cuid) for cuid in cuids):
        raise DirectCallError(errors.BAD_FRAME, "Field 'cuids' must be a list of cuids.")
    distinct = list(dict.fromkeys(cuids))
    if len(distinct) > limit:
        raise DirectCallError(errors.WATCH_LIMIT, f"At most {limit} cuids per connection.")
    return distinct


def ref_of(frame: dict[str, Any]) -> str | None:
    """The frame's optional ``ref`` (echoed back), as a string."""
    ref = frame.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str | int) or isinstance(ref, bool) or len(str(ref)) > 64:
        raise DirectCallError(errors.BAD_FRAME, "Field 'ref' must be a short string.")
    return str(ref)


def reason_of(frame: dict[str, Any], allowed: frozenset[str], default: str) -> str:
    """The frame's optional ``reason``, one of ``allowed``."""
    reason = frame.get("reason") or default
    if reason not in allowed:
        raise DirectCallError(errors.BAD_FRAME, f"Unknown {frame.get('type')} reason.")
    return reason


# Device and call keys as the server makes them (secrets.token_urlsafe(32): 43 characters);
# anything else presented is no key at all.
_KEY = re.compile(r"[A-Za-z0-9_-]{16,128}")


def key_of(value: Any) -> str | None:
    """A device or call key as presented in a frame, or None if it is not one."""
    return value if isinstance(value, str) and _KEY.fullmatch(value) else None


@dataclass(frozen=True)
class Resume:
    """An ``auth`` frame's ``resume`` list: the calls asked about, and the keys presented."""

    call_ids: list[str]  # every valid call id, in order
    keys: dict[str, str]  # call id -> call key, for the items that carry one


def resume_of(frame: dict[str, Any]) -> Resume:
    """The valid items of an ``auth`` frame's optional ``resume`` list (at most 8).

    Each item is ``{call_id, call_key}`` (take the call back, if the key is its side's) or
    a bare call id (the older form: only its final state is asked for).
    """
    resume = frame.get("resume")
    ids: list[str] = []
    keys: dict[str, str] = {}
    for item in resume[:MAX_RESUME] if isinstance(resume, list) else []:
        if isinstance(item, dict):
            call_id, key = as_call_id(item.get("call_id")), key_of(item.get("call_key"))
            if call_id and key:
                keys[call_id] = key
        else:
            call_id = as_call_id(item)
        if call_id and call_id not in ids:
            ids.append(call_id)
    return Resume(ids, keys)


def resume_ids(frame: dict[str, Any]) -> list[str]:
    """The valid call ids of an ``auth`` frame's optional ``resume`` list (at most 8)."""
    return resume_of(frame).call_ids


def device_key_of(frame: dict[str, Any]) -> str | None:
    """An ``auth`` frame's optional ``device_key``, if it has the shape of one."""
    return key_of(frame.get("device_key"))


@dataclass(frozen=True)
class Invite:
    """A checked ``invite`` frame."""

    params: CallParams
    sdp: str
    ref: str | None


def invite_of(frame: dict[str, Any]) -> Invite:
    """Check an ``invite`` frame: the call parameters, the offer and the ``ref``."""
    params = clean_call_params(
        frame.get("receiver"),
        frame.get("context"),
        {key: frame.get(key) for key in ("receiver_image", "initiator_image")},
    )
    return Invite(params=params, sdp=sdp_of(frame), ref=ref_of(frame))


def candidates_of(frame: dict[str, Any]) -> dict[str, Any]:
    """A ``candidates`` frame's payload, rebuilt from the known fields only."""
    end = frame.get("end", False)
    if not isinstance(end, bool):
        raise DirectCallError(errors.BAD_FRAME, "Field 'end' must be a boolean.")
    raw = frame.get("candidates", [])
    if not isinstance(raw, list) or len(raw) > MAX_CANDIDATES:
        raise DirectCallError(
            errors.BAD_FRAME, f"'candidates' must be a list of ≤ {MAX_CANDIDATES}."
        )
    clean = []
    for item in raw:
        if not isinstance(item, dict):
            raise DirectCallError(errors.BAD_FRAME, "Each candidate must be an object.")
        candidate = item.get("candidate")
        mid = item.get("sdpMid")
        index = item.get("sdpMLineIndex")
        ufrag = item.get("usernameFragment")
        if (
            not isinstance(candidate, str)
            or len(candidate) > MAX_CANDIDATE_CHARS
            or not (mid is None or (isinstance(mid, str) and len(mid) <= 64))
            or not (index is None or (type(index) is int and 0 <= index < 256))
            or not (ufrag is None or (isinstance(ufrag, str) and len(ufrag) <= 256))
        ):
            raise DirectCallError(errors.BAD_FRAME, "A candidate has invalid fields.")
        clean.append(
            {
                "candidate": candidate,
                "sdpMid": mid,
                "sdpMLineIndex": index,
                "usernameFragment": ufrag,
            }
        )
    return {"type": "candidates", "candidates": clean, "end": end}


def renegotiation_of(frame: dict[str, Any]) -> dict[str, Any]:
    """A ``renegotiate`` frame's payload: an ICE-restart offer or its answer.

    ``replace: true`` on an offer: the sender made a brand-new peer connection (its page
    reloaded); the receiver replaces its own and answers from the new one.
    """
    sdp_type = frame.get("sdp_type")
    if sdp_type not in ("offer", "answer"):
        raise DirectCallError(errors.BAD_FRAME, "Field 'sdp_type' must be offer or answer.")
    replace = frame.get("replace", False)
    if not isinstance(replace, bool):
        raise DirectCallError(errors.BAD_FRAME, "Field 'replace' must be a boolean.")
    if replace and sdp_type != "offer":
        raise DirectCallError(errors.BAD_FRAME, "Only an offer can replace a connection.")
    payload = {"type": "renegotiate", "sdp_type": sdp_type, "sdp": sdp_of(frame)}
    if replace:
        payload["replace"] = True
    return payload


# -- frames to the browser ---------------------------------------------------------------------


def dumps(frame: dict[str, Any]) -> str:
    """A frame as the compact JSON text sent on the socket."""
    return _ENCODER.encode(frame)


# What json.dumps(frame, separators=(",", ":")) makes, without a new encoder per frame.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def blocked_frame(ref: str | None, cuid: str) -> dict[str, Any]:
    """``blocked``: the answer to ``block``; calls from ``cuid`` are refused from now on."""
    return {"type": "blocked", "ref": ref, "cuid": cuid}


def watching_frame(ref: str | None, states: dict[str, str]) -> dict[str, Any]:
    """``watching``: the answer to ``watch``, the state of each cuid it named."""
    return {"type": "watching", "ref": ref, "presence": states}


def unwatched_frame(ref: str | None, cuids: list[str]) -> dict[str, Any]:
    """``unwatched``: the answer to ``unwatch``; no more ``presence`` about these cuids."""
    return {"type": "unwatched", "ref": ref, "cuids": cuids}


def presence_frame(states: dict[str, str]) -> dict[str, Any]:
    """``presence``: watched cuids whose state changed (``online``, ``offline``, ``busy``)."""
    return {"type": "presence", "presence": states}


def error_frame(exc: DirectCallError, frame: Any = None) -> dict[str, Any]:
    """``error {code, message}``, echoing the refused frame's ``ref``, ``call_id`` and type."""
    error: dict[str, Any] = {"type": "error", **exc.as_dict()}
    if isinstance(frame, dict):
        for key in ("ref", "call_id"):
            value = frame.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                error[key] = str(value)[:64]
        if isinstance(frame.get("type"), str):
            error["in_reply_to"] = frame["type"][:32]
    return error


def ready_frame(
    cuid: str,
    name: str,
    calls: list[dict[str, Any]],
    reconnect_grace: float,
    page_grace: float,
    device_key: str | None = None,
    feedback: bool = False,
) -> dict[str, Any]:
    """``ready``: who the connection signed in as, and the live calls it was handed.

    ``device_key`` only when the server issued one (the first tab of this device);
    ``feedback``: the account asks for a rating after each answered call.
    """
    frame = {
        "type": "ready",
        "cuid": cuid,
        "name": name,
        "calls": calls,
        "reconnect_grace": reconnect_grace,
        "page_grace": page_grace,
        "feedback": feedback,
    }
    if device_key is not None:
        frame["device_key"] = device_key
    return frame


def role_in(call: Call, registration_pk: int) -> str:
    """``"caller"`` or ``"callee"``: the side of ``registration_pk`` in ``call``."""
    return "caller" if call.caller_id == registration_pk else "callee"


def call_summary(call: Call, role: str) -> dict[str, Any]:
    """One live call in ``ready.calls`` (``answered_at`` in epoch seconds, or None)."""
    peer = call.callee if role == "caller" else call.caller
    image = call.receiver_image if role == "caller" else call.caller_image
    return {
        "call_id": str(call.pk),
        "status": call.status,
        "role": role,
        "peer": {"cuid": peer.cuid, "name": peer.display_name, "image": image or None},
        "context": call.context,
        "answered_at": round(call.answered_at.timestamp(), 3) if call.answered_at else None,
    }


def invited_frame(ref: str | None, call: Call, call_key: str | None = None) -> dict[str, Any]:
    """``invited``: the server took the caller's invite; ``call_key``: the inviting tab's."""
    frame = {
        "type": "invited",
        "ref": ref,
        "call_id": str(call.pk),
        "receiver": {"cuid": call.callee.cuid, "name": call.callee.display_name},
    }
    if call_key is not None:
        frame["call_key"] = call_key
    return frame


def incoming_frame(call: Call, sdp: str, now: float | None = None) -> dict[str, Any]:
    """``incoming``: a call rings for the callee, with the caller's offer."""
    now = time.time() if now is None else now
    remaining = (call.deadline.timestamp() - now) if call.deadline else 0
    return {
        "type": "incoming",
        "call_id": str(call.pk),
        "caller": {
            "cuid": call.caller.cuid,
            "name": call.caller.display_name,
            "image": call.caller_image or None,
        },
        "receiver_image": call.receiver_image or None,
        "context": call.context,
        "sdp": sdp,
        "ring_timeout": max(0, round(remaining, 3)),
    }


def state_frame(call: Call) -> dict[str, Any]:
    """``state``: a call's current status."""
    duration = call.duration
    return {
        "type": "state",
        "call_id": str(call.pk),
        "status": call.status,
        "reason": call.end_reason,
        "duration": round(duration.total_seconds(), 3) if duration is not None else None,
    }


def answered_elsewhere(frame: dict[str, Any]) -> dict[str, Any]:
    """The ``answered`` state as a callee's tab that did not answer gets it: another tab did."""
    return {
        "type": "state",
        "call_id": frame["call_id"],
        "status": frame["status"],
        "reason": frame.get("reason", ""),
        "duration": None,
        "elsewhere": True,
    }


def peer_frame(call_id: str, connected: bool) -> dict[str, Any]:
    """``peer``: the other party's connection dropped or came back."""
    return {"type": "peer", "call_id": call_id, "connected": connected}


def saved_frame(ref: str | None, call_id: str) -> dict[str, Any]:
    """``saved``: the answer to ``quality`` and ``feedback``: the server kept it."""
    return {"type": "saved", "ref": ref, "call_id": call_id}


def summary_of(frame: dict[str, Any]) -> dict[str, Any]:
    """The ``quality`` field of a ``hangup`` or ``quality`` frame, checked (directcall.quality)."""
    return quality.clean_summary(frame.get("quality"))


def feedback_of(frame: dict[str, Any]) -> tuple[int, list[str]]:
    """A ``feedback`` frame's ``score`` and ``issues``, checked."""
    return quality.clean_feedback(frame.get("score"), frame.get("issues"))


PONG = {"type": "pong"}


# -- messages between the server's processes (channel layer) -------------------------------------
# The type names the consumer method that handles it ("dc.state" → dc_state). Browsers
# cannot send these: frame types are checked against CLIENT_FRAMES first.


def incoming_message(
    call: Call,
    caller_channel: str,
    frame: dict[str, Any],
    carried: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``dc.incoming`` to the callee's connection; ``channel`` is the caller's.

    ``carried``: the call's parties and deadline as plain values
    (:func:`directcall.calls.carried`), so that the callee's connection need not read the
    call; a connection of the same process gets the call itself (``_local``).
    """
    message = {
        "type": "dc.incoming",
        "registration": call.callee_id,
        "channel": caller_channel,
        "frame": frame,
        "_local": {"call": call},
    }
    if carried is not None:
        message["call"] = carried
    return message


def state_message(
    call: Call, registration_pk: int, frame: dict[str, Any], bound: str | None = None
) -> dict[str, Any]:
    """``dc.state`` to one party's connection.

    ``deadline`` (epoch seconds) is the call's new deadline, so that no connection reads
    it back from the database to arm its timer. ``bound``: the channel of the callee's
    connection whose ``accept`` won (the caller relays to it; the callee's other tabs
    stop ringing).
    """
    message = {
        "type": "dc.state",
        "registration": registration_pk,
        "frame": frame,
        "deadline": call.deadline.timestamp() if call.deadline else None,
    }
    if bound is not None:
        message["bound"] = bound
    return message


def relay_message(call_id: str, sender_pk: int, frame: dict[str, Any]) -> dict[str, Any]:
    """``dc.relay``: candidates or a renegotiation for the other party."""
    return {"type": "dc.relay", "call_id": call_id, "from": sender_pk, "frame": frame}


def peer_message(
    call_id: str, sender_pk: int, connected: bool, channel: str | None = None
) -> dict[str, Any]:
    """``dc.peer``: the sender's connection dropped, or came back on ``channel``."""
    message = {"type": "dc.peer", "call_id": call_id, "from": sender_pk, "connected": connected}
    if channel is not None:
        message["channel"] = channel
    return message


def watched_message(account_pk: int, cuid: str) -> dict[str, Any]:
    """``dc.watched``: ``cuid`` signed in or out, or a call of theirs began or ended; sent
    to its watch group, where each process looks its state up again."""
    return {"type": "dc.watched", "account": account_pk, "cuid": cuid}


def blocked_message(blocker_pk: int) -> dict[str, Any]:
    """``dc.blocked``: to the blocked user's connections; they stop watching the blocker."""
    return {"type": "dc.blocked", "blocker": blocker_pk}
