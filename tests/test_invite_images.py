"""Issue 13, 3 — no address leaks before an answer.

``initiator_image`` was any URL the caller picked, and the callee's incoming screen loaded
it at once: a server the caller ran learnt the callee's IP address and User-Agent 0.06 s
after the invite, even with relay-only ICE. Now (``identity.invite_images``, wired into
``calls.place_call``): with verified identities the pictures are the registrations' own;
with page identities a caller's URL is kept only when its origin (scheme, host, port) is
the site's own — the one the signaling socket was opened on — or one the account allows;
otherwise it is dropped from the call, so the ``incoming`` frame never carries it. The
real-browser check is ``tests/e2e/test_image_leak.py``.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from directcall.identity import invite_images
from directcall.models import Call, Identity, Registration
from directcall.origins import Origin

from .wsclient import OFFER

SITE = Origin("http", "testserver", 80)  # what the test clients open their sockets on


@pytest.fixture
def page_pair(make_account):
    def make(**fields):
        account, _key = make_account(identity=Identity.PAGE, **fields)
        ann = Registration.objects.create(account=account, cuid="page_ann")
        bob = Registration.objects.create(account=account, cuid="page_bob")
        return ann, bob

    return make


@pytest.mark.parametrize(
    "url,kept",
    [
        ("http://testserver/pictures/ann.png", True),  # the site's own
        ("http://testserver:80/ann.png", True),  # the same origin, port spelt out
        ("http://TESTSERVER/ann.png", True),
        ("http://testserver:8080/ann.png", False),  # another port
        ("https://testserver/ann.png", False),  # another scheme
        ("http://evil.example/ann.png", False),
        ("http://testserver.evil.example/ann.png", False),
        ("http://testserver@evil.example/ann.png", False),  # user info: the host is evil
        ("https://cdn.example.org/ann.png", True),  # listed by the account
        ("https://cdn.example.org:8443/ann.png", False),
        ("http://cdn.example.org/ann.png", False),
    ],
)
@pytest.mark.django_db
def test_page_accounts_keep_urls_of_the_site_or_allowed_origins_only(page_pair, url, kept):
    ann, bob = page_pair(allowed_origins="https://cdn.example.org\nhttps://app.example.org")
    expected = url if kept else ""
    assert invite_images(ann, bob, url, url, SITE) == (expected, expected)


@pytest.mark.django_db
def test_without_allowed_origins_only_the_sites_own_images_are_kept(page_pair):
    # An empty list lets every page origin sign in; it vouches for no image server.
    ann, bob = page_pair(allowed_origins="")
    assert invite_images(ann, bob, "https://anywhere.example/a.png", None, SITE) == ("", "")
    assert invite_images(ann, bob, "http://testserver/a.png", None, SITE) == (
        "http://testserver/a.png",
        "",
    )
    # No site origin known (say, a socket without a Host header): nothing of the site's.
    assert invite_images(ann, bob, "http://testserver/a.png", None, None) == ("", "")


@pytest.mark.django_db
def test_verified_accounts_show_the_registrations_own_pictures(make_account):
    account, _key = make_account(identity=Identity.VERIFIED)
    jane = Registration.objects.create(
        account=account, cuid="tutor_jane", image_url="https://elsewhere.example/jane.png"
    )
    sam = Registration.objects.create(account=account, cuid="student_sam")
    chosen = "http://testserver/chosen.png"
    assert invite_images(jane, sam, chosen, chosen, SITE) == (
        "https://elsewhere.example/jane.png",  # vouched for by the host: shown as is
        "",
    )


# -- through the consumer ---------------------------------------------------------------------


@database_sync_to_async
def stored_images(call_id: str) -> tuple[str, str]:
    call = Call.objects.get(pk=call_id)
    return call.caller_image, call.receiver_image


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
@pytest.mark.parametrize(
    "url,kept",
    [
        ("http://127.0.0.1:9/track.png", False),  # a server the caller runs
        ("https://cdn.example.org/jane.png", True),  # an origin the account allows
    ],
)
async def test_the_incoming_frame_carries_only_images_the_callee_may_load(
    people, clients, url, kept
):
    def allow_cdn():
        account = people["tutor_jane"].account
        account.allowed_origins = "https://cdn.example.org"
        account.save()

    await database_sync_to_async(allow_cdn)()
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    await jane.send(
        type="invite",
        ref="r",
        receiver="student_sam",
        context="Hi",
        sdp=OFFER,
        initiator_image=url,
        receiver_image=url,
    )
    call_id = (await jane.next("invited", ref="r"))["call_id"]
    incoming = await sam.next("incoming", call_id=call_id)
    expected = url if kept else None
    assert incoming["caller"]["image"] == expected
    assert incoming["receiver_image"] == expected
    assert await stored_images(call_id) == ((url, url) if kept else ("", ""))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
async def test_the_sites_own_images_are_those_of_the_socket_origin(people, clients, settings):
    from channels.testing import WebsocketCommunicator

    from example_project.asgi import application

    from .wsclient import WS_PATH, Client

    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    site = b"http://localhost:8000"
    comm = WebsocketCommunicator(
        application, WS_PATH, headers=[(b"origin", site), (b"host", b"localhost:8000")]
    )
    assert (await comm.connect(timeout=5))[0]
    jane = Client(comm, "tutor_jane", people["tutor_jane"].pk)
    clients.opened.append(jane)
    await jane.authenticate(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    own, other_port = "http://localhost:8000/static/jane.png", "http://localhost:9000/jane.png"
    for ref, url in (("own", own), ("other", other_port)):
        await jane.send(
            type="invite",
            ref=ref,
            receiver="student_sam",
            context="Hi",
            sdp=OFFER,
            initiator_image=url,
        )
        call_id = (await jane.next("invited", ref=ref))["call_id"]
        incoming = await sam.next("incoming", call_id=call_id)
        assert incoming["caller"]["image"] == (url if url == own else None)
        await jane.send(type="cancel", call_id=call_id)
        await jane.next("state", call_id=call_id, status="cancelled")
