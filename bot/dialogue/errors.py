"""Load-time errors that point at the YAML line an author has to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DialogError(Exception):
    """The dialogs cannot be loaded; the message reads `path/to/file.yaml:LINE: what is wrong`."""


@dataclass(frozen=True)
class Where:
    """A place in a dialog file, kept with every parsed node so later checks can still blame a line."""

    path: Path
    line: int

    def error(self, message: str) -> DialogError:
        return DialogError(f"{self.path}:{self.line}: {message}")
