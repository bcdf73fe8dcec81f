"""The demo site's Content-Security-Policy: directcall's pages need no inline script."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

# 'self' for scripts and styles: no inline <script>, no style attributes. Images of the
# other party may come from any https host; call audio is a MediaStream; the signaling
# socket is on this host (ws: and wss: are listed for browsers whose 'self' leaves them out).
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "media-src 'self' blob:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)


def _applies(request: HttpRequest, response: HttpResponse) -> bool:
    # Django's admin has an inline <style> on some change lists, so it keeps its own
    # (no) policy; directcall's call dashboard would render under this one too.
    if request.path.startswith(reverse("admin:index")):
        return False
    # With DEBUG, error responses are Django's technical pages, styled inline.
    return not (settings.DEBUG and response.status_code >= 400)


class ContentSecurityPolicyMiddleware:
    """Send ``POLICY`` with every response outside the admin (unless a view set its own).

    Not on Django's debug error pages (``DEBUG`` on, status 400 or more), which need
    inline styles and scripts.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._add_policy(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        return self._add_policy(request, await self.get_response(request))

    @staticmethod
    def _add_policy(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if _applies(request, response):
            response.headers.setdefault("Content-Security-Policy", POLICY)
        return response
