"""The short ``DIRECTCALL`` timings of the browser tests' server (``tests/e2e_settings.py``).

Kept apart from the settings module so that tests can import them without configuring
a server.
"""

RING_TIMEOUT = 4
RECONNECT_GRACE = 3
PRESENCE_TTL = 5
SWEEP_INTERVAL = 0.5

DIRECTCALL = {
    "RING_TIMEOUT": RING_TIMEOUT,
    "RECONNECT_GRACE": RECONNECT_GRACE,
    "PRESENCE_TTL": PRESENCE_TTL,
    "SWEEP_INTERVAL": SWEEP_INTERVAL,
    "AUTH_TIMEOUT": 5,
    # Host candidates only: browsers on one machine need no STUN server.
    "ICE_SERVERS": [],
    # Many sign-ins from 127.0.0.1 within one test session.
    "THROTTLE_RATES": {"directcall_init_ip": "6000/min", "directcall_init_account": "6000/min"},
}
