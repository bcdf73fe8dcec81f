"""The demo's own webhook receiver: it verifies each delivery and logs it to the console.

``manage.py demo_setup`` points an endpoint of the session account at it, so a demo call
shows its ``call.*`` events arriving (signed, through the task worker ``demo.sh`` starts).
A real receiver runs in another service and keeps the secret in its own configuration;
this one, living in the same site, reads it from the endpoint (docs/webhooks.md).
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from directcall.webhooks import signing
from directcall.webhooks.models import WebhookEndpoint

logger = logging.getLogger("example_project.webhooks")

DESCRIPTION = "The demo's receiver (logs to the console)"


@csrf_exempt  # signed by directcall, not posted by a browser
@require_POST
def receive(request: HttpRequest) -> HttpResponse:
    """204 for a delivery signed by the demo endpoint's secret(s), 401 otherwise."""
    endpoint = WebhookEndpoint.objects.filter(description=DESCRIPTION).first()
    headers = {name.lower(): value for name, value in request.headers.items()}
    for secret in endpoint.signing_secrets() if endpoint else []:
        try:
            msg_id = signing.verify(secret, headers, request.body)
        except signing.InvalidSignature:
            continue
        body = json.loads(request.body)
        data = body.get("data", {})
        logger.info(
            "webhook %s %s: call %s %s",
            msg_id,
            body.get("type"),
            data.get("id", data.get("cuid", "")),
            data.get("status", ""),
        )
        return HttpResponse(status=204)
    logger.warning("webhook refused: no valid signature")
    return HttpResponse(status=401)
