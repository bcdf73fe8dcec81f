"""ASGI workers behind the production nginx, as one server of a benchmark.

``bench/signaling.py`` (its ``proxy`` configuration) and ``bench/sizing.py`` start the
topology of ``deploy/topology.py`` without its database and Redis (the benchmark brings
its own) and without coturn: nginx terminating TLS in front of ``workers`` processes
running ``bench/proxy_settings.py``. Clients connect to nginx's port over ``wss://`` and
trust its self-signed certificate through ``SSL_CERT_FILE`` (``client_env``).
"""

from __future__ import annotations

from pathlib import Path

from deploy.topology import LAYER, SERVER, Topology, TopologyError, require

__all__ = ["LAYER", "SERVER", "ProxiedWorkers", "TopologyError", "nginx_installed"]


def nginx_installed() -> bool:
    """Whether nginx is there to run (Debian: apt-get install nginx)."""
    try:
        require("nginx", "nginx")
    except TopologyError:
        return False
    return True


class ProxiedWorkers:
    """nginx (TLS) → ``workers`` ASGI processes; quacks like ``bench._common.Proc``."""

    scheme = "https"

    def __init__(
        self,
        name: str,
        workdir: Path,
        *,
        database_url: str,
        redis_url: str,
        prefix: str,
        workers: int = 2,
        server: str = SERVER,
        layer: str = LAYER,
        pin_workers: bool = False,
    ) -> None:
        self.name = name
        self.topology = Topology(
            workdir,
            workers=workers,
            server=server,
            layer=layer,
            settings="bench.proxy_settings",
            asgi_app="bench.asgi:application",
            database_url=database_url,
            redis_url=redis_url,
            prepare=False,
            turn=False,
            tasks=False,
            ready_path="/bench/blank",
            env={"DIRECTCALL_REDIS_PREFIX": prefix},
            logs=workdir / "logs",
            pin_workers=pin_workers,
        )
        self.log = workdir / "logs" / "worker1.log"
        self.port = 0

    def start(self, timeout: float = 60) -> ProxiedWorkers:
        try:
            self.topology.up()
        except BaseException:
            self.topology.down()
            raise
        self.port = self.topology.https_port
        return self

    def stop(self) -> None:
        self.topology.down()

    @property
    def pid(self) -> int:
        """The first worker's (what a profiler attaches to)."""
        return self.topology.worker_services[0].pid

    @property
    def pids(self) -> list[int]:
        """Every process that serves the clients: the workers and nginx's."""
        return self.topology.server_pids

    @property
    def client_env(self) -> dict[str, str]:
        """What a client process needs to trust nginx's self-signed certificate."""
        return {"SSL_CERT_FILE": str(self.topology.certificate)}

    def tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {s.name}\n{s.tail(lines)}" for s in self.topology.services if s.log.exists()
        )
