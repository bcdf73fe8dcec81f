"""``POST v1/init`` through Django's own ASGI handler, as a server runs it.

Django's test clients call the view in the test's thread. The handler instead runs each
request in a thread of its own (``ThreadSensitiveContext``) that ends with the request:
what the per-request threads' database connections and Redis backend are tested with.
"""

from __future__ import annotations

import json

from asgiref.testing import ApplicationCommunicator
from django.core.asgi import get_asgi_application

INIT_PATH = "/directcall/v1/init"


def init_body(account, key: str, cuid: str = "tutor_jane") -> str:
    """The JSON body of a page's init for ``cuid`` with the account's key."""
    return json.dumps({"accountId": account.account_id, "apikey": key, "cuid": cuid})


async def post_init(body: str) -> tuple[int, bytes]:
    """Send one ``POST v1/init`` with ``body``; its status and body, once it has ended
    (its thread's ``request_finished`` receivers have run)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": INIT_PATH,
        "raw_path": INIT_PATH.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    app = ApplicationCommunicator(get_asgi_application(), scope)
    await app.send_input({"type": "http.request", "body": body.encode()})
    start = await app.receive_output(10)
    response = await app.receive_output(10)
    await app.wait(10)
    return start["status"], response["body"]
