"""An ``asgi.py`` as ``startproject`` writes it (directcall.W011's case; never imported)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
