"""WebSocket routes of directcall; include them in the host's ASGI router::

    from directcall.routing import websocket_urlpatterns
    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    })

The path follows ``DIRECTCALL["WEBSOCKET_PATH"]`` (default ``ws/directcall/v1/``).
"""

from django.urls import path

from .conf import get_settings
from .consumers import SignalingConsumer

websocket_urlpatterns = [
    path(get_settings().WEBSOCKET_PATH.lstrip("/"), SignalingConsumer.as_asgi()),
]
