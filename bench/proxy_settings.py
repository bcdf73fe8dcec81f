"""Settings of the worker processes behind nginx in the benchmarks (``bench/proxy.py``).

The production settings (``deploy/settings.py``: Redis keys and channels under
``DIRECTCALL_REDIS_PREFIX``, the proxy's ``X-Forwarded-*`` headers trusted) with what the
other benchmark servers run (``bench/settings.py``): directcall alone, its secret key (the
tokens a benchmark mints once work on every configuration), and the limits that would get
in a load test's way raised.
"""

from bench import settings as bench
from deploy.settings import *  # noqa: F403
from deploy.settings import DIRECTCALL as PRODUCTION_DIRECTCALL

SECRET_KEY = bench.SECRET_KEY
INSTALLED_APPS = bench.INSTALLED_APPS
MIDDLEWARE = bench.MIDDLEWARE
ROOT_URLCONF = bench.ROOT_URLCONF
ASGI_APPLICATION = bench.ASGI_APPLICATION
LOGGING = bench.LOGGING
DIRECTCALL = {
    **bench.DIRECTCALL,
    # bench/sizing.py's pairs call each other back to back for longer than a minute.
    "CALL_RATE": None,
    "ICE_SERVERS": PRODUCTION_DIRECTCALL["ICE_SERVERS"],
    "TURN_SECRET": PRODUCTION_DIRECTCALL["TURN_SECRET"],
}
