"""ASGI application of the browser tests' daphne server (``tests/e2e/conftest.py``).

The demo site's application, with Django's static-files handler in front of its HTTP side:
with ``DEBUG = False`` nothing else serves ``/static/`` in a lone daphne process. Only the
tests use this; the demo's own ``example_project.asgi`` is unchanged.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e_settings")

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from example_project.asgi import application as site_application

# Serves /static/ from the finders (app and STATICFILES_DIRS directories), passes every
# other HTTP request and every WebSocket to the demo's ProtocolTypeRouter.
application = ASGIStaticFilesHandler(site_application)
