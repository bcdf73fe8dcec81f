"""The ``DIRECTCALL`` settings of the browser tests' server (``tests/e2e_settings.py``).

Short timings, and the demo site's adapter with a session account that the tests create
(``SESSION_ACCOUNT``). Kept apart from the settings module so that tests can import them
without configuring a server.
"""

RING_TIMEOUT = 4
RECONNECT_GRACE = 3
# A page that said it is leaving (reload, link, closed tab): time for the next page to sign in.
PAGE_GRACE = 5
PRESENCE_TTL = 5
SWEEP_INTERVAL = 0.5
# The account id of server-minted sessions ({% directcall_session %}); tests that log
# Django users in create an account with this id.
SESSION_ACCOUNT = "e2e_session_account"

DIRECTCALL = {
    "RING_TIMEOUT": RING_TIMEOUT,
    "RECONNECT_GRACE": RECONNECT_GRACE,
    "PAGE_GRACE": PAGE_GRACE,
    "PRESENCE_TTL": PRESENCE_TTL,
    "SWEEP_INTERVAL": SWEEP_INTERVAL,
    "AUTH_TIMEOUT": 5,
    # Host candidates only: browsers on one machine need no STUN server.
    "ICE_SERVERS": [],
    # Many sign-ins from 127.0.0.1 within one test session.
    "THROTTLE_RATES": {
        "directcall_init_ip": "6000/min",
        "directcall_init_ip_new": "6000/min",
        "directcall_init_account": "6000/min",
    },
    "SESSION_ACCOUNT": SESSION_ACCOUNT,
    # Socket sign-ins too: every page of every test signs in from 127.0.0.1, often as the
    # same cuid in a new browser (a new device, not exempt).
    "AUTH_RATE_IP": "6000/min",
    "AUTH_RATE_CUID": "600/min",
    # Tests call the same person again right after a declined or missed call.
    "RING_BACKOFF": None,
    # The demo's: students may call tutors only (cuids that are not demo users: anyone).
    "ADAPTER": "example_project.calling.DemoCallAdapter",
}
