"""The embedded Redis: a real server, data kept under the data directory, never orphaned."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from redis import Redis

from bot.redis_server import EmbeddedRedis, free_port


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_data_survives_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path)
    client = Redis.from_url(server.start())
    client.xadd("stream", {"k": "v"})
    client.close()
    server.stop()
    assert not answers(server.port)
    again = EmbeddedRedis(data_dir=tmp_path, port=free_port())
    client = Redis.from_url(again.start())
    assert client.xlen("stream") == 1
    client.close()
    again.stop()


def test_the_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", f"from bot.redis_server import EmbeddedRedis; EmbeddedRedis(port={port}).start(); "
                               "print('up', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None and parent.stdout.readline().strip() == b"up"
    assert answers(port)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while answers(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not answers(port)
