"""Rendering: only http(s) image URLs are stored or handed to a browser; markup stays data.

The call screens render names, contexts and pictures from the frames below inside a
shadow root, as text and as ``<img src>`` of http(s) URLs only (the browser tests check
that, tests/e2e); the admin escapes the stored values (tests/test_admin.py). Here: the
server's side, through the real ASGI stack on both channel layers.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from directcall.models import Account, Call

from .wsclient import OFFER, Client, make_registration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]

HOSTILE_IMAGE_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "  javascript:alert(1)",
    "java\tscript:alert(1)",
    "javascript://example.com/%0aalert(1)",
    "data:image/png;base64,iVBORw0KGgo=",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "//evil.example/a.png",
    "/static/a.png",
    "https:evil.example/a.png",
    "https://",
    "https://x.example/\x00.png",
    "https://x.example/\ud800.png",
    "https://x.example/a.png\n",
    "x" * 3000,
]


@pytest.fixture
def people(make_account):
    account, _ = make_account()
    return {
        cuid: make_registration(account, cuid, name)
        for cuid, name in [("tutor_jane", "<b>Jane</b>"), ("student_sam", "Sam")]
    }


async def test_only_http_image_urls_are_accepted_at_invite(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    for field in ("receiver_image", "initiator_image"):
        for index, url in enumerate(HOSTILE_IMAGE_URLS):
            ref = f"{field}-{index}"
            await jane.send(
                type="invite",
                ref=ref,
                receiver="student_sam",
                context="hi",
                sdp=OFFER,
                **{field: url},
            )
            error = await jane.next("error", ref=ref)
            if "\ud800" in url:  # not text at all: refused before the call rules
                assert error["code"] == "ERR_BAD_FRAME", (url, error)
                continue
            assert error["code"] == "ERR_INVALID_CALL_PARAMETERS", (url, error)
            assert field in error["message"], (url, error)
    assert await sam.quiet(0.1) == []
    assert not await database_sync_to_async(Call.objects.exists)()
    await jane.close()
    await sam.close()


async def test_markup_travels_as_data(people):
    """An http(s) URL may hold markup in its path, and names and contexts may be markup:
    they are stored and delivered as they are, as JSON strings, for the screens to render
    as text (they never become HTML on the server)."""
    # A caller's picture is kept from an origin the account allows only (issue 13).
    allowed = Account.objects.filter(pk=people["tutor_jane"].account_id)
    await database_sync_to_async(allowed.update)(allowed_origins="https://x.example")
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    image = 'https://x.example/"><svg/onload=alert(1)>.png'
    context = "<img src=x onerror=alert(1)> is calling"
    invited = await jane.invite("student_sam", context=context, initiator_image=image)
    incoming = await sam.next("incoming", call_id=invited["call_id"])
    assert incoming["context"] == context
    assert incoming["caller"] == {"cuid": "tutor_jane", "name": "<b>Jane</b>", "image": image}
    call = await database_sync_to_async(Call.objects.get)(pk=invited["call_id"])
    assert (call.context, call.caller_image) == (context, image)
    await jane.close()
    await sam.close()
