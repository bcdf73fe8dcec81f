"""Verified identities (issue 13): user tokens minted by the host, checked by v1/init.

Each attack of issue 13 that these close is a test here that fails on the code before
verified identities (where the API key and a cuid signed anyone in as anyone).
"""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from directcall import tokens
from directcall.identity import MAX_TTL, mint_user_token, verify_user_token
from directcall.models import Account, Identity, Registration

pytestmark = pytest.mark.django_db

URL = "/directcall/v1/init"
CUID = "tutor_jane"


@pytest.fixture
def verified(make_account):
    """A verified account (the default for new accounts), its key and its signing secret."""
    account, key = make_account(identity=Identity.VERIFIED)
    return account, key, account.signing_secret


def init(api_client, account, key, **fields):
    body = {"accountId": account.account_id, "apikey": key, "cuid": CUID, **fields}
    return api_client.post(URL, body, format="json")


def refused(response, code="ERR_INVALID_USER_TOKEN", status=401) -> str:
    body = response.json()
    assert (response.status_code, body["code"]) == (status, code), body
    return body["message"]


def claims(account, **overrides):
    now = int(time.time())
    return {"iss": account.account_id, "sub": CUID, "iat": now, "exp": now + 300, **overrides}


def signed(payload, secret, algorithm="HS256") -> str:
    return jwt.encode(payload, secret, algorithm=algorithm)


def unsigned(payload) -> str:
    """A JWT with ``alg: none`` and no signature (the classic forgery)."""

    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


# -- the attacks --------------------------------------------------------------------------------


def test_the_api_key_alone_signs_nobody_in_to_a_verified_account(api_client, verified):
    """Issue 13, 1: with the key (readable in the page) and a cuid, anyone became anyone,
    offline or online. A verified account needs the host's token for that very cuid."""
    account, key, _secret = verified
    Registration.objects.create(account=account, cuid=CUID, name="Jane")  # the victim exists
    message = refused(init(api_client, account, key, name="Mallory"))
    assert "userToken" in message
    assert Registration.objects.get(cuid=CUID).name == "Jane"  # nothing changed


def test_the_session_account_s_key_signs_nobody_in(api_client, make_account, settings):
    """Issue 13, 2: the demo's /call/ page put the session account's key in the page, and
    with it a visitor signed in as a logged-in tutor (init answered with her real name)."""
    account, key = make_account(identity=Identity.VERIFIED, account_id="site_sessions")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    Registration.objects.create(account=account, cuid="user_1", name="Jane Tutor")
    response = init(api_client, account, key, cuid="user_1")
    refused(response)
    assert "Jane Tutor" not in response.content.decode()


def test_a_token_of_another_cuid_is_refused(api_client, verified):
    account, key, _secret = verified
    mallory = mint_user_token(account, "mallory_1")
    assert "another cuid" in refused(init(api_client, account, key, userToken=mallory))


def test_a_token_of_another_account_is_refused(api_client, verified, make_account):
    account, key, _secret = verified
    other, _ = make_account(identity=Identity.VERIFIED)
    # Signed by the other account, for the same cuid: its iss is the other account.
    foreign = mint_user_token(other, CUID)
    refused(init(api_client, account, key, userToken=foreign))
    # The other account's secret with this account's iss: the signature does not match.
    forged = signed(claims(account), other.signing_secret)
    refused(init(api_client, account, key, userToken=forged))


def test_an_unsigned_token_is_refused(api_client, verified):
    account, key, _secret = verified
    refused(init(api_client, account, key, userToken=unsigned(claims(account))))


# PyJWT warns that a 43-byte key is short for SHA-384/512: these tokens are forgeries anyway.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_secret(api_client, verified, algorithm):
    account, key, secret = verified
    token = signed(claims(account), secret, algorithm)
    refused(init(api_client, account, key, userToken=token))


def test_an_expired_token_is_refused(api_client, verified):
    account, key, secret = verified
    now = int(time.time())
    token = signed(claims(account, iat=now - 700, exp=now - 60), secret)
    assert "expired" in refused(init(api_client, account, key, userToken=token))


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) + 2 * MAX_TTL, "iat": None},  # more than an hour ahead
        {"iat": int(time.time()) - 60, "exp": int(time.time()) + MAX_TTL},  # iat..exp > 1 h
        {"exp": None},  # no expiry at all
        {"sub": None},
        {"iss": None},
        {"name": "x"},  # not a valid name
        {"name": "<b>\u0000</b>"},
        {"image": "javascript:alert(1)"},
        {"jti": "x" * 65},
        {"sub": 12345},
    ],
)
def test_tokens_breaking_the_rules_are_refused(api_client, verified, overrides):
    account, key, secret = verified
    payload = {k: v for k, v in claims(account, **overrides).items() if v is not None}
    refused(init(api_client, account, key, userToken=signed(payload, secret)))
    assert not Registration.objects.exists()


def test_a_missing_or_malformed_token(api_client, verified):
    account, key, _secret = verified
    refused(init(api_client, account, key))
    refused(init(api_client, account, key, userToken=""))
    refused(init(api_client, account, key, userToken="a.b.c"))
    # Not even shaped like a JWT: a parameter error, as for any other field.
    refused(init(api_client, account, key, userToken="a b"), "ERR_INVALID_INITPARAMETERS", 400)


def test_a_revoked_user_token_is_refused(api_client, verified):
    account, key, _secret = verified
    token = mint_user_token(account, CUID)
    assert init(api_client, account, key, userToken=token).status_code == 200
    tokens.revoke_token(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert "revoked" in refused(init(api_client, account, key, userToken=token))


def test_rotating_the_signing_secret_refuses_the_old_tokens(api_client, verified):
    account, key, _secret = verified
    token = mint_user_token(account, CUID)
    account.rotate_signing_secret()
    refused(init(api_client, account, key, userToken=token))
    fresh = mint_user_token(account, CUID)
    assert init(api_client, account, key, userToken=fresh).status_code == 200


def test_an_account_without_a_signing_secret_takes_no_token(api_client, verified):
    account, key, _secret = verified
    token = mint_user_token(account, CUID)
    Account.objects.filter(pk=account.pk).update(signing_secret="")
    assert "signing secret" in refused(init(api_client, account, key, userToken=token))


def test_the_wrong_key_is_still_refused_first(api_client, verified):
    account, _key, _secret = verified
    token = mint_user_token(account, CUID)
    response = init(api_client, account, "wrong.key", userToken=token)
    refused(response, "ERR_INVALID_CREDENTIALS")


# -- a good token -------------------------------------------------------------------------------


def test_a_valid_token_signs_its_cuid_in_with_its_name_and_picture(api_client, verified):
    account, key, _secret = verified
    image = "https://cdn.example.org/jane.png"
    token = mint_user_token(account, CUID, name="Jane Doe", image=image, ttl=600)
    # The page's name is not the host's word: ignored.
    response = init(api_client, account, key, userToken=token, name="Mallory")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["cuid"], body["name"], body["image"]) == (CUID, "Jane Doe", image)
    registration = Registration.objects.get(account=account, cuid=CUID)
    assert (registration.name, registration.image_url) == ("Jane Doe", image)
    session = tokens.verify(body["token"])
    assert session.registration_pk == registration.pk and session.verified


def test_a_token_without_a_name_leaves_none(api_client, verified):
    account, key, _secret = verified
    Registration.objects.create(account=account, cuid=CUID, name="Old Name")
    body = init(api_client, account, key, userToken=mint_user_token(account, CUID)).json()
    assert (body["name"], body["image"]) == (CUID, None)


def test_a_plain_pyjwt_token_from_another_backend_works(api_client, verified):
    """The docs' snippet for non-Django backends (docs/accounts.md#user-tokens)."""
    account, key, secret = verified
    now = int(time.time())
    token = jwt.encode(
        {"iss": account.account_id, "sub": CUID, "name": "Jane", "iat": now, "exp": now + 600},
        secret,
        algorithm="HS256",
    )
    assert init(api_client, account, key, userToken=token).json()["name"] == "Jane"


def test_small_clock_skew_is_tolerated(api_client, verified):
    account, key, secret = verified
    now = int(time.time())
    token = signed(claims(account, iat=now + 5, exp=now + 300), secret)
    assert init(api_client, account, key, userToken=token).status_code == 200


def test_a_page_account_takes_a_token_when_given_one(api_client, make_account):
    """Moving to verified identities: the pages send tokens first, then the account switches."""
    account, key = make_account(identity=Identity.PAGE)
    token = mint_user_token(account, CUID, name="Jane Doe")
    body = init(api_client, account, key, userToken=token, name="Mallory").json()
    assert body["name"] == "Jane Doe" and tokens.verify(body["token"]).verified
    refused(init(api_client, account, key, userToken=mint_user_token(account, "other_1")))
    # Without a token, the page's word, as in the original SDK.
    body = init(api_client, account, key, name="Mallory").json()
    assert body["name"] == "Mallory" and not tokens.verify(body["token"]).verified


def test_refusals_are_logged_without_the_token(api_client, verified, caplog):
    account, key, _secret = verified
    token = mint_user_token(account, "mallory_1")
    with caplog.at_level("INFO"):
        init(api_client, account, key, userToken=token)
    assert "other cuid" in caplog.text and account.account_id in caplog.text
    assert token not in caplog.text and token.split(".")[2] not in caplog.text


# -- the helper ---------------------------------------------------------------------------------


def test_mint_user_token_claims(verified):
    account, _key, secret = verified
    token = mint_user_token(account, CUID, name=" Jane ", image="https://x.example/j.png", ttl=60)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, secret, algorithms=["HS256"], issuer=account.account_id)
    assert payload["sub"] == CUID and payload["name"] == "Jane"
    assert payload["exp"] - payload["iat"] == 60 and len(payload["jti"]) >= 16
    claims_ = verify_user_token(account, token, CUID)
    assert (claims_.name, claims_.image) == ("Jane", "https://x.example/j.png")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cuid": "91_8899555"},
        {"name": "x"},
        {"image": "ftp://x.example/j.png"},
        {"ttl": 0},
        {"ttl": MAX_TTL + 1},
        {"ttl": 1.5},
    ],
)
def test_mint_user_token_refuses_bad_input(verified, kwargs):
    account, _key, _secret = verified
    kwargs.setdefault("cuid", CUID)
    with pytest.raises(ValueError):
        mint_user_token(account, kwargs.pop("cuid"), **kwargs)


def test_mint_user_token_needs_a_secret(verified):
    account, _key, _secret = verified
    account.signing_secret = ""
    with pytest.raises(ValueError, match="signing secret"):
        mint_user_token(account, CUID)


# -- the session account ------------------------------------------------------------------------


def test_the_session_account_cannot_be_set_to_page(make_account, settings):
    account, _key = make_account(identity=Identity.VERIFIED)
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    account.identity = Identity.PAGE
    with pytest.raises(ValidationError) as info:
        account.full_clean()
    assert "identity" in info.value.message_dict
    other, _ = make_account(identity=Identity.VERIFIED)
    other.identity = Identity.PAGE
    other.full_clean()  # any other account may


def test_v1_session_refuses_a_page_session_account(
    make_account, settings, django_user_model, caplog
):
    from rest_framework.test import APIClient

    account, _key = make_account(identity=Identity.PAGE)
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    client = APIClient()
    client.force_login(django_user_model.objects.create_user("sam"))
    response = client.post("/directcall/v1/session", {}, format="json")
    assert response.status_code == 500 and response.json()["code"] == "ERR_INTERNAL"
    assert "page identities" not in response.content.decode()  # the log says why
    assert "takes page identities" in caplog.text
    assert not Registration.objects.exists()


@override_settings(DIRECTCALL={"TOKEN_TTL": 900})
def test_new_accounts_are_verified_with_a_secret_of_their_own(db):
    first = Account.objects.create(name="First")
    second = Account.objects.create(name="Second")
    assert first.identity == second.identity == Identity.VERIFIED
    assert first.signing_secret and second.signing_secret
    assert first.signing_secret != second.signing_secret
    assert len(first.signing_secret) >= 43  # 256 bits


# -- pictures on the call screens -----------------------------------------------------------------


def test_verified_accounts_show_the_registrations_pictures_not_the_callers_choice(make_account):
    from directcall.identity import invite_images

    account, _key = make_account(identity=Identity.VERIFIED)
    jane = Registration.objects.create(
        account=account, cuid=CUID, image_url="https://cdn.example.org/jane.png"
    )
    sam = Registration.objects.create(account=account, cuid="student_sam")
    chosen = ("https://attacker.example/track.png", "https://attacker.example/t2.png")
    assert invite_images(jane, sam, *chosen) == ("https://cdn.example.org/jane.png", "")
    page, _key = make_account(identity=Identity.PAGE)
    ann = Registration.objects.create(account=page, cuid="page_ann")
    bob = Registration.objects.create(account=page, cuid="page_bob")
    # Page identities: the caller's choice, from origins the account allows only
    # (tests/test_invite_images.py); attacker.example is not one.
    assert invite_images(ann, bob, *chosen) == ("", "")
    assert invite_images(ann, bob, None, None) == ("", "")
