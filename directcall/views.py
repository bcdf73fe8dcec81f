"""Pages of directcall that are not part of the JSON API."""

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.views.decorators.http import require_GET

# A BCP 47 tag as the SDK sends it ("ar", "es-MX"); anything else is ignored.
_LANGUAGE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,4}")


def screens_language(requested: str | None) -> str:
    """The language to render the screens in: the closest one the site supports to
    ``requested`` (``?lang=``), else the request's (``LANGUAGE_CODE``, or LocaleMiddleware's)."""
    if requested and len(requested) <= 35 and _LANGUAGE.fullmatch(requested):
        try:
            return translation.get_supported_language_variant(requested.lower())
        except LookupError:
            pass
    return translation.get_language() or "en"


@require_GET
def screens(request: HttpRequest) -> HttpResponse:
    """The call screens' markup (``directcall/screens.html``), fetched by the browser SDK.

    ``?lang=es``: in that language (or the closest the site supports, see ``LANGUAGES``);
    the markup's ``lang`` and ``dir`` attributes say which one it is.
    """
    language = screens_language(request.GET.get("lang"))
    with translation.override(language):
        response = render(request, "directcall/screens.html")
    response["Content-Language"] = language
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"  # static markup; the SDK may be elsewhere
    return response
