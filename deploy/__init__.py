"""The production topology on one machine: nginx, ASGI workers, Redis, PostgreSQL, coturn."""
