"""ASGI entry point of the demo site: HTTP through Django, WebSockets to directcall."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from directcall.origins import DirectCallOriginValidator  # noqa: E402
from directcall.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The site's own origin, or one that an active account lists (docs/integration.md).
        "websocket": DirectCallOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)
