"""WebSocket routes of directcall; include them in the host's ASGI router::

    from directcall.origins import DirectCallOriginValidator
    from directcall.routing import websocket_urlpatterns
    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": DirectCallOriginValidator(URLRouter(websocket_urlpatterns)),
    })

``DirectCallOriginValidator`` admits the site's own origin and the origins that active
accounts allow (see :mod:`directcall.origins`).

The path follows ``DIRECTCALL["WEBSOCKET_PATH"]`` (default ``ws/directcall/v1/``).
"""

from django.urls import path

from .conf import get_settings
from .consumers import SignalingConsumer

websocket_urlpatterns = [
    path(get_settings().WEBSOCKET_PATH.lstrip("/"), SignalingConsumer.as_asgi()),
]
