"""Which channel reaches a contact best, for a message of a given purpose.

The contact's preferred channel first (set explicitly, else the one they wrote from last), then the
configured fallback order; a channel counts only if the hub runs it, the contact has an identity on
it (WhatsApp and SMS: a phone), its consent allows the purpose (`bot.context.consent`), and — for
WhatsApp outside the 24-hour window — a fallback template is configured to go out instead. Used by
the API's transactional sends ("channel": "best") and by campaigns' "preferred" steps.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bot.context import consent, whatsapp_window
from bot.context.profiles import preferred_channel
from bot.context.store import Snapshot
from bot.context.whatsapp_window import SEEN_WHATSAPP
from bot.models import CHANNELS, Channel, Purpose
from bot.pipeline.commands import CommandRefused, address


def best_channel(snapshot: Snapshot, purpose: Purpose, order: Sequence[Channel], enabled: Collection[str],
                 whatsapp_template: bool, exclude: Collection[str] = ()) -> Channel | None:
    """`exclude`: channels not to use (a journey's `next` step: those tried already, and SMS)."""
    profile = snapshot.profile
    preferred = next((c for c in CHANNELS if c == preferred_channel(profile)), None)
    for channel in dict.fromkeys([*([preferred] if preferred else []), *order]):
        if channel in exclude or channel not in enabled or not consent.allowed(profile, channel, purpose):
            continue
        try:
            address(snapshot, channel)
        except CommandRefused:
            continue
        if channel == "whatsapp" and not whatsapp_template and not whatsapp_window.is_open(profile.get(SEEN_WHATSAPP)):
            continue
        return channel
    return None
