"""The sandbox's demo agent, so a newcomer can sign in to `/console` right after `omnihub run`.

Its password is fixed and printed in the banner: it exists only on a hub in sandbox mode, whose
channels are emulators on this machine.
"""

from __future__ import annotations

from bot.handoff.agents import AgentError, AgentStore

DEMO_EMAIL = "agent@omnihub.local"
DEMO_PASSWORD = "omnihub-demo"


async def ensure_demo_agent(store: AgentStore) -> tuple[str, str]:
    """The demo agent (a supervisor of the default team), created or its password restored; email, password."""
    existing = await store.by_email(DEMO_EMAIL)
    if existing is None:
        try:
            await store.create(DEMO_EMAIL, "Demo Agent", DEMO_PASSWORD, role="supervisor", teams=("support",))
        except AgentError as exc:
            if exc.status != 409:  # 409: another process created it first, which is as good
                raise
    elif await store.verify(DEMO_EMAIL, DEMO_PASSWORD) is None:  # changed since: the banner must not lie
        await store.set_password(existing.id, DEMO_PASSWORD)
    return DEMO_EMAIL, DEMO_PASSWORD
