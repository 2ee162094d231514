"""WhatsApp's 24-hour service window: free-form messages only within 24 hours of the customer's last
one (outside it, an approved template). One rule, read by the sender (which enforces it) and the desk
(which shows it to agents)."""

from __future__ import annotations

import time

SEEN_WHATSAPP = "seen:whatsapp"  # profile field: epoch of the contact's last WhatsApp message (set by the turn)
WINDOW_SECONDS = 24 * 3600


def is_open(seen: str | None, now: float | None = None) -> bool:
    """Whether the window is open, given the profile's `seen:whatsapp` (None: they never wrote)."""
    return seen is not None and (now or time.time()) - float(seen) < WINDOW_SECONDS
