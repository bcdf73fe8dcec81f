"""WebSocket routes of directcall; include them in the host's ASGI router."""

websocket_urlpatterns: list = []
