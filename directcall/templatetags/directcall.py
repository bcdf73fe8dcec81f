"""Template tags for host pages: ``{% load directcall %}``.

A page of a site whose users are logged in needs three tags and no script of its own::

    {% load directcall %}
    <head>
      {% directcall_session %}        {# the logged-in user's config: no API key #}
    </head>
    <body>
      {% directcall_button tutor "Your student is calling" %}
      {% directcall_scripts %}        {# the call screens and the SDK module #}
    </body>

Everything they render comes from overridable templates under ``directcall/``
(``scripts.html``, ``session.html``, ``button.html``) and works under a strict
Content-Security-Policy (``script-src 'self'``): configuration travels as JSON in a
``<script type="application/json">`` element and as ``data-*`` attributes, never as
inline JavaScript.

Call buttons carry the page's button nonce (``data-directcall-nonce``), a random value
made once per request and written by ``{% directcall_scripts %}`` into
``<script type="application/json" id="directcall-buttons">``. The SDK wires only buttons
whose nonce matches, so markup that users put into a page (a comment that keeps
``data-*`` attributes) cannot plant a button that calls someone.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from django import template
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import pgettext

from ..adapter import get_adapter
from ..screen_strings import screen_strings
from ..validation import is_valid_context, is_valid_cuid, is_valid_url

register = template.Library()
logger = logging.getLogger("directcall.templatetags")

# The name of a global the SDK looks up on window (e.g. "clevertap"), not an expression.
_GLOBAL_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}")


_JSON_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}

# Where a request keeps its button nonce: every tag of one response reads the same one.
_NONCE_ATTRIBUTE = "_directcall_button_nonce"


def _request(context: template.Context) -> HttpRequest | None:
    return context.get("request")


def button_nonce(request: HttpRequest) -> str:
    """This request's call-button nonce: made on first use, the same for the whole response.

    For pages that render call buttons without ``{% directcall_button %}`` (Jinja2, HTML
    built in Python): put it in ``data-directcall-nonce``. ``{% directcall_button_nonce %}``
    is the same value in a Django template.
    """
    nonce = getattr(request, _NONCE_ATTRIBUTE, None)
    if nonce is None:
        # 128 random bits: a page's nonce cannot be guessed from the nonces of other pages.
        nonce = secrets.token_urlsafe(16)
        setattr(request, _NONCE_ATTRIBUTE, nonce)
    return nonce


def _nonce(context: template.Context) -> str:
    request = _request(context)
    if request is not None:
        return button_nonce(request)
    # A template rendered without a request (no view): its tags share the render context,
    # whose first dict lives as long as this render and is shared by included templates.
    store = context.render_context.dicts[0]
    if _NONCE_ATTRIBUTE not in store:
        store[_NONCE_ATTRIBUTE] = secrets.token_urlsafe(16)
    return store[_NONCE_ATTRIBUTE]


@register.simple_tag(takes_context=True)
def directcall_scripts(context: template.Context) -> SafeString:
    """The call screens' markup and the SDK module; put it once per page, e.g. in a base template.

    Usage::

        {% load directcall %}
        {% directcall_scripts %}

    Renders ``directcall/scripts.html``: a ``<template id="directcall-screens">`` holding
    ``directcall/screens.html`` (so the SDK need not fetch the screens) and
    ``<script type="module" src=".../directcall/js/directcall.js">``; then the page's
    button nonce as ``<script type="application/json" id="directcall-buttons">``
    (written here, not in the template, so that an overridden template cannot lose it).
    With a ``{% directcall_session %}`` on the page, the SDK signs the user in on load.
    """
    html = render_to_string("directcall/scripts.html", request=_request(context))
    return html + json_script({"nonce": _nonce(context)}, "directcall-buttons")


@register.simple_tag
def directcall_screen_strings() -> SafeString:
    """The call screens' texts in the active language, as JSON for the SDK.

    Usage (in ``directcall/screens.html``, inside the ``.dc-overlay`` element)::

        {% load directcall %}
        {% directcall_screen_strings %}

    Renders ``<script type="application/json" data-directcall-strings>`` holding
    :data:`directcall.screen_strings.SCREEN_STRINGS`, translated; ``screens.t(key)`` reads it.
    """
    # Escaped as json_script escapes: no "<", ">" or "&" can end the script element.
    text = json.dumps(screen_strings(), ensure_ascii=False).translate(_JSON_SCRIPT_ESCAPES)
    return format_html(
        '<script type="application/json" data-directcall-strings>{}</script>',
        mark_safe(text),  # noqa: S308 (escaped above, as json_script escapes)
    )


@register.simple_tag(takes_context=True)
def directcall_button_nonce(context: template.Context) -> str:
    """This page's call-button nonce, for call buttons written by hand.

    Usage::

        {% load directcall %}
        <button type="button" data-directcall-call="{{ cuid }}" data-directcall-context="Hi"
                data-directcall-nonce="{% directcall_button_nonce %}">Call</button>

    The SDK wires a ``[data-directcall-call]`` element only when its
    ``data-directcall-nonce`` equals the nonce ``{% directcall_scripts %}`` wrote into the
    same response; ``{% directcall_button %}`` adds it by itself.
    """
    return _nonce(context)


@register.simple_tag(takes_context=True)
def directcall_session(
    context: template.Context, *, ringtone: str | None = None, clevertap: str | None = None
) -> SafeString | str:
    """The SDK's configuration for the logged-in user; nothing for anonymous visitors.

    Usage::

        {% load directcall %}
        {% directcall_session %}
        {% directcall_session ringtone="https://example.com/ring.mp3" clevertap="clevertap" %}

    Renders ``directcall/session.html``: ``<script type="application/json"
    id="directcall-config">`` with ``sessionUrl`` (``POST v1/session``), ``serverUrl``
    (where ``directcall.urls`` is mounted) and ``csrfToken``. The server decides who the
    user is (the adapter and ``DIRECTCALL["SESSION_ACCOUNT"]``): no account id, API key or
    cuid is written into the page.

    ``ringtone``: an http(s) URL of the tone played while a call rings for this user.
    ``clevertap``: the name of a global holding a CleverTap Web SDK instance (for accounts
    that require CleverTap), e.g. ``"clevertap"`` for ``window.clevertap``.
    Needs ``django.template.context_processors.request``.
    """
    request = _request(context)
    if request is None:
        raise ImproperlyConfigured(
            "{% directcall_session %} needs the request in the template context: add "
            "'django.template.context_processors.request' to the context processors."
        )
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ""
    session_url = reverse("directcall:session")
    init_url = reverse("directcall:init")
    config: dict[str, Any] = {
        "sessionUrl": session_url,
        "serverUrl": init_url.removesuffix("v1/init"),
        "csrfToken": get_token(request),
    }
    if ringtone:
        if is_valid_url(ringtone):
            config["ringtone"] = ringtone
        else:
            logger.warning("{%% directcall_session %%}: ignored the invalid ringtone %r", ringtone)
    if clevertap:
        if _GLOBAL_NAME.fullmatch(clevertap):
            config["clevertap"] = clevertap
        else:
            logger.warning(
                "{%% directcall_session %%}: clevertap must be the name of a global, not %r",
                clevertap,
            )
    return render_to_string("directcall/session.html", {"config": config}, request=request)


@register.simple_tag(takes_context=True)
def directcall_button(
    context: template.Context,
    receiver: Any,
    call_context: str,
    *,
    label: str | None = None,
    name: str | None = None,
    receiver_image: str | None = None,
    initiator_image: str | None = None,
    css_class: str | None = None,
    presence: bool = True,
) -> SafeString | str:
    """A button that calls ``receiver``, showing them ``call_context`` on their incoming screen.

    Usage::

        {% load directcall %}
        {% directcall_button tutor "Sam (your student) is calling" %}
        {% directcall_button "grocer_gil" "About order 1234" label="Call the shop" name="Gil" %}
        {% directcall_button tutor "Hi" receiver_image=tutor_photo_url css_class="btn" %}

    ``receiver``: a user (its cuid, display name and picture come from the adapter) or a
    cuid. ``call_context`` (the second argument): 1–280 characters. ``label``: the visible
    text (default "Call"); the accessible name is "Call <name>" when the receiver's name is
    known (``name=`` for a cuid). ``receiver_image``/``initiator_image``: http(s) URLs for the
    call screens. ``css_class``: extra classes. ``presence=False``: the button does not
    follow whether the receiver is online (by default the SDK watches it and, while the
    receiver is offline or in a call, marks it ``aria-disabled="true"`` with the text
    "Offline" or "In a call"; ``data-directcall-presence`` holds the state). On a page that
    cannot call (its sign-in failed, or its client logged out) the buttons in it say
    "Unavailable", are ``aria-disabled="true"`` and their ``data-directcall-presence`` is
    ``unavailable``.

    Renders ``directcall/button.html``: ``<button type="button" data-directcall-call=...
    data-directcall-nonce=...>`` with the page's button nonce (see
    ``{% directcall_button_nonce %}``). The SDK (``{% directcall_scripts %}``) places the
    call on click, sets ``aria-busy="true"`` while it runs and then dispatches a bubbling
    ``directcall:result`` event on the button (``detail``: ``{result}`` or ``{error}``).
    An invalid receiver, context or image URL renders nothing and logs a warning.
    """
    adapter = get_adapter()
    default_image = None
    if isinstance(receiver, str):
        cuid = receiver
    elif getattr(receiver, "pk", None) is not None:
        cuid = adapter.get_cuid(receiver)
        name = name or adapter.get_display_name(receiver)
        default_image = adapter.get_image_url(receiver)
    else:
        cuid = None
    receiver_image = receiver_image or default_image
    problems = []
    if not is_valid_cuid(cuid):
        problems.append("receiver")
    if not is_valid_context(call_context):
        problems.append("context")
    for key, url in (("receiver_image", receiver_image), ("initiator_image", initiator_image)):
        if url and not is_valid_url(url):
            problems.append(key)
    if problems:
        # A page must not break over one bad button; the log says which argument it was.
        logger.warning(
            "{%% directcall_button %%} rendered nothing: invalid %s (receiver %r)",
            ", ".join(problems),
            cuid if cuid is not None else receiver,
        )
        return ""
    visible = label if label else pgettext("call button", "Call")
    if name and not label:
        aria_label = pgettext("call button", "Call %(name)s") % {"name": name}
    elif name and name not in visible:
        # The accessible name starts with the visible label (WCAG 2.5.3, label in name).
        aria_label = _labelled(visible, name)
    else:
        aria_label = None
    # Shown instead of the label while the receiver is offline or in a call (the SDK
    # watches the page's buttons, docs/integration.md#who-is-online).
    offline, busy = pgettext("call button", "Offline"), pgettext("call button", "In a call")
    # Shown on every button of a page that cannot call (its sign-in failed, or it logged out).
    unavailable = pgettext("call button", "Unavailable")
    return render_to_string(
        "directcall/button.html",
        {
            "cuid": cuid,
            "call_context": call_context,
            "label": visible,
            "aria_label": aria_label,
            "name": name,  # the outgoing screen shows it before the server's answer
            "receiver_image": receiver_image,
            "initiator_image": initiator_image,
            "css_class": css_class,
            "nonce": _nonce(context),
            "presence": presence,
            "offline_label": offline,
            "offline_aria": _labelled(offline, name) if name else None,
            "busy_label": busy,
            "busy_aria": _labelled(busy, name) if name else None,
            "unavailable_label": unavailable,
            "unavailable_aria": _labelled(unavailable, name) if name else None,
        },
    )


def _labelled(visible: str, name: str) -> str:
    """An accessible name that starts with the visible text and names the person."""
    return pgettext("call button", "%(label)s (%(name)s)") % {"label": visible, "name": name}
