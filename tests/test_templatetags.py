"""The template tags ``{% load directcall %}``: scripts, session config and call buttons."""

from __future__ import annotations

import json
import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import translation

from directcall.adapter import DefaultCallAdapter
from directcall.screen_strings import screen_strings
from directcall.templatetags.directcall import button_nonce

pytestmark = pytest.mark.django_db

PAYLOAD = '"><script>alert(1)</script>'


@pytest.fixture
def user():
    return get_user_model().objects.create_user(
        "sam", password="pw-for-tests", first_name="Sam", last_name="Student"
    )


@pytest.fixture
def tutor():
    return get_user_model().objects.create_user("jane", first_name="Jane", last_name="Tutor")


@pytest.fixture
def session_account(make_account, settings):
    account, key = make_account()
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    return account, key


def request_for(user=None):
    request = RequestFactory().get("/people/")
    request.user = user if user is not None else AnonymousUser()
    request.session = SessionStore()
    return request


def render(source: str, user=None, with_request: bool = True, **context) -> str:
    if with_request:
        context["request"] = request_for(user)
    return Template("{% load directcall %}" + source).render(Context(context))


def nonce_of(html: str) -> str:
    """The button nonce that ``{% directcall_scripts %}`` wrote into ``html``."""
    match = re.search(
        r'<script id="directcall-buttons" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, html
    return json.loads(match.group(1))["nonce"]


def button_nonces(html: str) -> list[str]:
    return re.findall(r'<button [^>]*data-directcall-nonce="([^"]*)"', html)


def config_of(html: str) -> dict:
    match = re.search(
        r'<script id="directcall-config" type="application/json">(.*?)</script>', html, re.S
    )
    assert match, html
    return json.loads(match.group(1))


# -- {% directcall_scripts %} ---------------------------------------------------------------


def test_scripts_holds_the_screens_the_module_and_the_button_nonce():
    html = render("{% directcall_scripts %}")
    assert html.startswith('<template id="directcall-screens">')
    # The call screens' markup, rendered (labels translated, static URLs resolved).
    assert 'data-screen="incoming"' in html and 'data-action="answer"' in html
    assert "/static/directcall/css/screens.css" in html and "{%" not in html
    assert html.count("</template>") == 1
    assert '<script type="module" src="/static/directcall/js/directcall.js"></script>' in html
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", nonce_of(html))


def test_scripts_has_no_inline_javascript():
    html = render("{% directcall_scripts %}")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    strings = json.dumps(screen_strings(), ensure_ascii=False)
    assert scripts == [
        # The screens' texts: data too (in the inert <template>).
        (' type="application/json" data-directcall-strings', strings),
        (' type="module" src="/static/directcall/js/directcall.js"', ""),
        # Data, not code: browsers do not run a script of type application/json.
        (' id="directcall-buttons" type="application/json"', json.dumps({"nonce": nonce_of(html)})),
    ]
    assert not re.search(r"\son[a-z]+=", html)  # no event-handler attributes
    assert "style=" not in html


def test_scripts_renders_without_a_request():
    html = render("{% directcall_scripts %}", with_request=False)
    assert 'data-screen="ongoing"' in html


# -- the call buttons' nonce ---------------------------------------------------------------

PAGE = (
    "{% directcall_button 'tutor_jane' 'hi' %}<p>{{ comment }}</p>"
    "{% directcall_button 'grocer_gil' 'About order 1234' %}{% directcall_scripts %}"
)


def test_every_button_of_a_render_carries_the_pages_nonce():
    html = render(PAGE, comment="user content")
    nonces = button_nonces(html)
    assert len(nonces) == 2 and set(nonces) == {nonce_of(html)}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", nonces[0])  # 128 random bits, URL-safe


def test_the_nonce_is_new_for_every_request():
    pages = [render(PAGE) for _ in range(5)]
    assert len({nonce_of(html) for html in pages}) == 5
    for html in pages:
        assert set(button_nonces(html)) == {nonce_of(html)}


def test_one_request_rendering_several_templates_shares_its_nonce():
    """A page rendered from several templates (or a template and a fragment) of one response."""
    request = request_for()
    buttons = Template("{% load directcall %}{% directcall_button 'tutor_jane' 'hi' %}").render(
        Context({"request": request})
    )
    scripts = Template("{% load directcall %}{% directcall_scripts %}").render(
        Context({"request": request})
    )
    assert button_nonces(buttons) == [nonce_of(scripts)] == [button_nonce(request)]


def test_the_nonce_tag_gives_the_nonce_of_the_page():
    html = render(
        '<button data-directcall-call="tutor_jane" data-directcall-nonce="'
        '{% directcall_button_nonce %}">Call</button>{% directcall_scripts %}'
    )
    assert button_nonces(html) == [nonce_of(html)]


def test_without_a_request_one_render_shares_one_nonce():
    first = render(PAGE, with_request=False)
    second = render(PAGE, with_request=False)
    assert set(button_nonces(first)) == {nonce_of(first)}
    assert set(button_nonces(second)) == {nonce_of(second)}
    assert nonce_of(first) != nonce_of(second)


# -- {% directcall_session %} ---------------------------------------------------------------


def test_session_config_for_a_logged_in_user(session_account, user):
    html = render("{% directcall_session %}", user)
    config = config_of(html)
    assert config["sessionUrl"] == "/directcall/v1/session"
    assert config["serverUrl"] == "/directcall/"
    assert len(config["csrfToken"]) >= 32
    assert set(config) == {"sessionUrl", "serverUrl", "csrfToken"}


def test_session_config_has_no_api_key_account_or_cuid(session_account, user):
    account, key = session_account
    html = render("{% directcall_session %}{% directcall_scripts %}", user)
    secret = key.split(".", 1)[1]
    assert key not in html and secret not in html and account.key_prefix not in html
    assert "apikey" not in html.lower()
    assert account.account_id not in html
    assert f"user_{user.pk}" not in html  # the server, not the page, says who this is


def test_session_csrf_token_is_the_requests(session_account, user):
    request = request_for(user)
    html = Template("{% load directcall %}{% directcall_session %}").render(
        Context({"request": request})
    )
    from django.middleware.csrf import _unmask_cipher_token

    token = config_of(html)["csrfToken"]
    # The masked token matches the secret the CSRF middleware will set as the cookie.
    assert _unmask_cipher_token(token) == request.META["CSRF_COOKIE"]


def test_session_renders_nothing_for_anonymous_visitors(session_account):
    assert render("{% directcall_session %}") == ""


def test_session_options(session_account, user):
    html = render(
        '{% directcall_session ringtone="https://cdn.example/ring.mp3" clevertap="clevertap" %}',
        user,
    )
    config = config_of(html)
    assert config["ringtone"] == "https://cdn.example/ring.mp3"
    assert config["clevertap"] == "clevertap"


def test_session_drops_invalid_options_and_escapes(session_account, user, caplog):
    with caplog.at_level(logging.WARNING, logger="directcall.templatetags"):
        html = render(
            "{% directcall_session ringtone=bad clevertap=bad %}",
            user,
            bad="</script><script>alert(1)</script>",
        )
    assert "<script>alert" not in html and "</script><script>" not in html
    config = config_of(html)
    assert "ringtone" not in config and "clevertap" not in config
    assert len(caplog.records) == 2


def test_session_follows_the_mount_point(session_account, user, settings):
    settings.ROOT_URLCONF = "tests.urls_elsewhere"
    config = config_of(render("{% directcall_session %}", user))
    assert config == {**config, "sessionUrl": "/calls/v1/session", "serverUrl": "/calls/"}


def test_session_needs_the_request(session_account):
    with pytest.raises(ImproperlyConfigured, match=r"context_processors\.request"):
        render("{% directcall_session %}", with_request=False)


# -- {% directcall_button %} ----------------------------------------------------------------


def test_button_for_a_cuid():
    html = render('{% directcall_button "tutor_jane" "Sam is calling" %}')
    [nonce] = button_nonces(html)
    assert html == (
        '<button type="button" class="directcall-button" data-directcall-call="tutor_jane" '
        f'data-directcall-context="Sam is calling" data-directcall-nonce="{nonce}" '
        'data-directcall-unavailable-label="Unavailable" '
        'data-directcall-watch data-directcall-offline-label="Offline" '
        'data-directcall-busy-label="In a call">Call</button>'
    )


def test_button_follows_presence_unless_told_not_to(tutor):
    html = render("{% directcall_button tutor 'hi' %}", tutor=tutor)
    # The texts shown while the receiver is offline or in a call, and accessible names that
    # start with them and name the person (WCAG 2.5.3).
    assert "data-directcall-watch " in html
    assert 'data-directcall-offline-label="Offline"' in html
    assert 'data-directcall-offline-aria="Offline (Jane Tutor)"' in html
    assert 'data-directcall-busy-label="In a call"' in html
    assert 'data-directcall-busy-aria="In a call (Jane Tutor)"' in html
    html = render("{% directcall_button tutor 'hi' presence=False %}", tutor=tutor)
    assert "data-directcall-watch" not in html and "offline" not in html.lower()


def test_every_button_can_say_the_page_cannot_call(tutor):
    """Shown by the SDK on a page whose sign-in failed or that logged out, followed or not."""
    for presence in (True, False):
        html = render("{% directcall_button tutor 'hi' presence=p %}", tutor=tutor, p=presence)
        assert 'data-directcall-unavailable-label="Unavailable"' in html
        assert 'data-directcall-unavailable-aria="Unavailable (Jane Tutor)"' in html


def test_button_texts_are_translated(tutor):
    with translation.override("es"):
        html = render("{% directcall_button tutor 'hi' %}", tutor=tutor)
    assert 'aria-label="Llamar a Jane Tutor"' in html and ">Llamar</button>" in html
    assert 'data-directcall-offline-label="Sin conexión"' in html
    assert 'data-directcall-busy-aria="En una llamada (Jane Tutor)"' in html
    assert 'data-directcall-unavailable-label="No disponible"' in html


def test_button_for_a_user_uses_the_adapter(user, tutor):
    html = render("{% directcall_button tutor 'Sam Student is calling' %}", user, tutor=tutor)
    assert f'data-directcall-call="user_{tutor.pk}"' in html
    assert 'aria-label="Call Jane Tutor"' in html
    assert ">Call</button>" in html


def test_button_carries_the_receivers_name_for_the_outgoing_screen(user, tutor):
    """The outgoing screen shows the name from the first moment (not the cuid until the
    server answers); escaped, as everything a user may have chosen."""
    html = render("{% directcall_button tutor 'hi' %}", user, tutor=tutor)
    assert 'data-directcall-name="Jane Tutor"' in html
    html = render('{% directcall_button "tutor_jane" "hi" name=chosen %}', chosen="<b>J's</b>")
    assert 'data-directcall-name="&lt;b&gt;J&#x27;s&lt;/b&gt;"' in html
    assert "data-directcall-name" not in render('{% directcall_button "tutor_jane" "hi" %}')


def test_button_options():
    html = render(
        '{% directcall_button "tutor_jane" "hi" label="Ring my tutor" name="Jane" '
        'receiver_image="https://img.example/j.png" initiator_image="https://img.example/s.png" '
        'css_class="btn btn-primary" %}'
    )
    assert 'class="directcall-button btn btn-primary"' in html
    assert 'data-directcall-receiver-image="https://img.example/j.png"' in html
    assert 'data-directcall-initiator-image="https://img.example/s.png"' in html
    # The accessible name starts with the visible label (WCAG 2.5.3).
    assert 'aria-label="Ring my tutor (Jane)"' in html
    assert ">Ring my tutor</button>" in html


def test_button_with_a_label_that_names_the_person_needs_no_aria_label():
    html = render('{% directcall_button "tutor_jane" "hi" label="Call Jane" name="Jane" %}')
    assert "aria-label" not in html and ">Call Jane</button>" in html


class PictureAdapter(DefaultCallAdapter):
    def get_image_url(self, user):
        return f"https://img.example/{user.username}.png"


def test_button_takes_the_receivers_picture_from_the_adapter(tutor, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.PictureAdapter"}
    html = render("{% directcall_button tutor 'hi' %}", tutor=tutor)
    assert 'data-directcall-receiver-image="https://img.example/jane.png"' in html
    html = render(
        "{% directcall_button tutor 'hi' receiver_image='https://other.example/x.png' %}",
        tutor=tutor,
    )
    assert 'data-directcall-receiver-image="https://other.example/x.png"' in html


def test_button_escapes_everything(tutor):
    tutor.first_name = PAYLOAD
    tutor.save()
    html = render(
        "{% directcall_button tutor payload label=payload css_class=payload "
        "receiver_image=image initiator_image=image %}",
        tutor=tutor,
        payload=PAYLOAD,
        image="https://img.example/a.png?" + PAYLOAD,
    )
    assert "<script>" not in html
    assert html.count("<") == 2  # <button ...> and </button>
    escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'data-directcall-context="{escaped}"' in html
    assert f'data-directcall-receiver-image="https://img.example/a.png?{escaped}"' in html
    assert f'aria-label="{escaped} ({escaped} Tutor)"' in html
    assert f">{escaped}</button>" in html


def test_button_escapes_even_under_autoescape_off():
    html = render(
        "{% autoescape off %}{% directcall_button 'tutor_jane' payload label=payload %}"
        "{% endautoescape %}",
        payload=PAYLOAD,
    )
    assert "<script>" not in html


@pytest.mark.parametrize(
    "tag",
    [
        "{% directcall_button payload 'hi' %}",  # receiver
        "{% directcall_button '91_8899555' 'hi' %}",  # number_number cuid
        "{% directcall_button 'abc' 'hi' %}",  # too short
        "{% directcall_button none 'hi' %}",  # neither a cuid nor a user
        "{% directcall_button 'tutor_jane' '' %}",  # context
        "{% directcall_button 'tutor_jane' long %}",  # context over 280 characters
        "{% directcall_button 'tutor_jane' 'hi' receiver_image='javascript:alert(1)' %}",
        "{% directcall_button 'tutor_jane' 'hi' initiator_image=payload %}",
    ],
)
def test_invalid_arguments_render_nothing_and_warn(tag, caplog):
    with caplog.at_level(logging.WARNING, logger="directcall.templatetags"):
        html = render(tag, payload=PAYLOAD, none=None, long="x" * 281)
    assert html == ""
    assert len(caplog.records) == 1
    assert "directcall_button" in caplog.records[0].getMessage()


def test_a_user_the_adapter_gives_an_invalid_cuid_renders_nothing(tutor, settings, caplog):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.BadCuidAdapter"}
    with caplog.at_level(logging.WARNING, logger="directcall.templatetags"):
        assert render("{% directcall_button tutor 'hi' %}", tutor=tutor) == ""
    assert "invalid receiver" in caplog.records[0].getMessage()


class BadCuidAdapter(DefaultCallAdapter):
    def get_cuid(self, user):
        return f"1_{user.pk}"


def test_a_page_of_all_three_tags_has_no_api_key(session_account, user, tutor):
    _account, key = session_account
    html = render(
        "<head>{% directcall_session %}</head><body>"
        "{% directcall_button tutor 'Sam is calling' %}{% directcall_scripts %}</body>",
        user,
        tutor=tutor,
    )
    assert config_of(html)["sessionUrl"] == "/directcall/v1/session"
    assert key not in html and key.split(".", 1)[1] not in html
