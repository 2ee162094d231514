"""Hub processes for the tests that kill or starve them: `omnihub <role>` with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ECHO_DIALOGS = ROOT / "tests" / "pipeline" / "echo_dialogs"


def hub_env(redis_url: str, port: int, config: Path) -> dict[str, str]:
    """This machine's environment with the echo bot, the given Redis and port, and no real channel."""
    env = {**os.environ, "REDIS_URL": redis_url, "OMNIHUB_PORT": str(port), "OMNIHUB_CONFIG": str(config),
           "OMNIHUB_DIALOGS": str(ECHO_DIALOGS)}
    return {name: value for name, value in env.items() if not name.startswith(("TELEGRAM_", "TWILIO_", "VIBER_"))}


def start(role: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bot.cli", role], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
