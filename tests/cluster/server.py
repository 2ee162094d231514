"""A real 3-master Redis Cluster on loopback, started and stopped by the tests that need one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from bot.redis_server import RedisUnavailable, find_redis_server, free_port

MASTERS = 3


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too."""
    while (port := free_port()) > 55_535:
        pass
    return port


class LocalCluster:
    """`start()` → the URL of one node (any node will do: the client discovers the rest); `stop()`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = [cluster_port() for _ in range(MASTERS)]
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 20.0) -> str:
        server = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            self._processes.append(subprocess.Popen(
                [server, "--cluster-enabled", "yes", "--cluster-config-file", str(self.data_dir / f"nodes-{port}.conf"),
                 "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.data_dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        self._wait(deadline, lambda node: bool(node.ping()))
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
        self._wait(deadline, lambda node: node.info("cluster").get("cluster_enabled") == 1
                   and node.execute_command("CLUSTER INFO").get("cluster_state") == "ok")
        return self.url

    def _wait(self, deadline: float, ready: Callable[[Redis], bool]) -> None:
        pending = list(self.ports)
        while pending:
            if time.monotonic() > deadline:
                self.stop()
                raise RedisUnavailable(f"cluster nodes {pending} not ready in time")
            port = pending[0]
            try:
                with Redis(port=port, socket_timeout=1, decode_responses=True) as node:
                    if ready(node):
                        pending.pop(0)
                        continue
            except (OSError, RedisError):
                pass
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []
