"""Hub processes for the tests that kill or starve them: `omnihub <role>` with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ECHO_DIALOGS = ROOT / "tests" / "pipeline" / "echo_dialogs"


def hub_env(redis_url: str, port: int, config: Path) -> dict[str, str]:
    """This machine's environment with the echo bot, the given Redis and port, and no real channel."""
    env = {**os.environ, "REDIS_URL": redis_url, "OMNIHUB_PORT": str(port), "OMNIHUB_CONFIG": str(config),
           "OMNIHUB_DIALOGS": str(ECHO_DIALOGS)}
    return {name: value for name, value in env.items() if not name.startswith(("TELEGRAM_", "TWILIO_", "VIBER_"))}


LOGS: dict[int, Path] = {}  # pid -> the file its stderr goes to


def start(role: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The process logs to a file, not a pipe: a pipe nobody reads fills up, and a hub blocked writing
    a log line stalls its event loop (its leases lapse) — a fault of the test's own making."""
    handle, name = tempfile.mkstemp(prefix=f"omnihub-{role}-", suffix=".log")
    with open(handle, "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", role], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=log)
    LOGS[proc.pid] = Path(name)
    return proc


def log_tail(proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
    """The end of what the process logged (for an assertion's message)."""
    path = LOGS.get(proc.pid)
    return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""
