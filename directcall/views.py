"""Pages of directcall that are not part of the JSON API."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def screens(request: HttpRequest) -> HttpResponse:
    """The call screens' markup (``directcall/screens.html``), fetched by the browser SDK."""
    response = render(request, "directcall/screens.html")
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"  # static markup; the SDK may be elsewhere
    return response
