"""Settings of the workers of the topology test (``tests/e2e/test_topology.py``).

The production settings (``deploy/settings.py``) with the ``DIRECTCALL`` timings the test
passes in ``DIRECTCALL_TOPOLOGY_TIMINGS`` (JSON): shorter presence, sweep and grace, so
that the documented bounds of a killed worker can be waited out in seconds.
"""

import json
import os

from deploy.settings import *  # noqa: F403
from deploy.settings import DIRECTCALL as PRODUCTION_DIRECTCALL

DIRECTCALL = {
    **PRODUCTION_DIRECTCALL,
    **json.loads(os.environ.get("DIRECTCALL_TOPOLOGY_TIMINGS") or "{}"),
}
