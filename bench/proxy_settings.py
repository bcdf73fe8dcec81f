"""Settings of the worker processes behind nginx in the benchmarks (``bench/proxy.py``).

The production settings (``deploy/settings.py``: Redis keys and channels under
``DIRECTCALL_REDIS_PREFIX``, the proxy's ``X-Forwarded-*`` headers trusted) with what the
other benchmark servers run (``bench/settings.py``): directcall alone, its secret key (the
tokens a benchmark mints once work on every configuration), the limits that would get in a
load test's way raised, and their database settings, so that ``bench/signaling.py``'s
``proxy`` configuration differs from the others by the proxy alone.
``BENCH_DATABASE=production`` keeps ``deploy/settings.py``'s instead (persistent
connections): ``bench/sizing.py`` measures the production setup.
"""

import os

from bench import settings as bench
from deploy.settings import *  # noqa: F403
from deploy.settings import DIRECTCALL as PRODUCTION_DIRECTCALL

SECRET_KEY = bench.SECRET_KEY
INSTALLED_APPS = bench.INSTALLED_APPS
MIDDLEWARE = bench.MIDDLEWARE
ROOT_URLCONF = bench.ROOT_URLCONF
ASGI_APPLICATION = bench.ASGI_APPLICATION
LOGGING = bench.LOGGING
if os.environ.get("BENCH_DATABASE") != "production":
    DATABASES = bench.DATABASES
DIRECTCALL = {
    **bench.DIRECTCALL,
    "ICE_SERVERS": PRODUCTION_DIRECTCALL["ICE_SERVERS"],
    "TURN_SECRET": PRODUCTION_DIRECTCALL["TURN_SECRET"],
}
