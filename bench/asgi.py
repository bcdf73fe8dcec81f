"""ASGI application of the benchmarks' servers (``bench/settings.py``).

The same router as a host site's (``example_project/asgi.py``): HTTP through Django, the
signaling WebSocket to directcall behind ``DirectCallOriginValidator``. HTTP adds
Django's static-files handler (``DEBUG`` is off, so nothing else serves the SDK from a lone
server process) and ``/bench/blank``, an empty HTML page on the server's origin from which
the browser benchmark imports the SDK.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from directcall.origins import DirectCallOriginValidator  # noqa: E402
from directcall.routing import websocket_urlpatterns  # noqa: E402

BLANK_PATH = "/bench/blank"
_BLANK = b"<!doctype html><html lang='en'><meta charset='utf-8'><title>bench</title><body></body>"

_site = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": DirectCallOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == BLANK_PATH:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": _BLANK})
        return
    await _site(scope, receive, send)
