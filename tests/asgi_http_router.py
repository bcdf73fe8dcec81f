"""A Channels router with HTTP alone (directcall.W011's case; never imported)."""

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

application = ProtocolTypeRouter({"http": get_asgi_application()})
