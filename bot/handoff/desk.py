"""The desk: what agents (API, console) and the router do with conversations, in one place.

Every change is a contact-addressed command (bot.pipeline.commands) applied by the contact's
partition worker, so an assignment, an agent's reply, a handoff and the customer's next message can
never race. The desk waits for the worker's answer (a list key it BLPOPs, `omni:{cid}:res:<id>`) so a
refused claim is a 409 to the caller, not a silent no-op. An agent's capacity is reserved on the
agent's own keys before an assignment is queued and given back if the worker refuses it.

A conversation id names its contact (`<contact id>-<first entry id>`), so no index is needed; an id
that is not the contact's current conversation is a 404 (it was resolved and a new one began).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel
from redis.asyncio import Redis

from bot.context import keys, whatsapp_window
from bot.context.history import HistoryEntry
from bot.context.store import ContextStore, Snapshot, new_id
from bot.context.whatsapp_window import SEEN_WHATSAPP
from bot.handoff.customer_turns import contact_of
from bot.models import Button
from bot.pipeline.commands import Assign, Command, Note, Resolve, SendText, SetMode, Tell
from bot.pipeline.ingest import Ingest, NotYetApplied

WAIT_SECONDS = 10
MERGE_HOPS = 5  # merged contacts followed to find a conversation that moved


class DeskError(Exception):
    """Refused: `status` is the HTTP answer (403, 404, 409, 504), the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Capacity(Protocol):
    """An agent's free slots (bot.handoff.agents): taken before an assignment, given back after."""

    async def reserve(self, agent_id: str, cid: str) -> bool: ...

    async def release(self, agent_id: str, cid: str) -> None: ...


class ConversationView(BaseModel):
    id: str
    contact_id: str
    mode: str
    channel: str | None
    user_id: str | None
    assignee: str | None
    team: str | None
    handoff_reason: str | None
    queued_at: float | None
    assigned_at: float | None
    name: str | None
    language: str | None
    # WhatsApp only: whether a free-form message may go out (within 24 h of the customer's last one)
    window_open: bool | None

    @classmethod
    def of(cls, snapshot: Snapshot) -> ConversationView:
        conv, profile = snapshot.conversation, snapshot.profile
        window = whatsapp_window.is_open(profile.get(SEEN_WHATSAPP)) if conv.get("ch") == "whatsapp" else None
        return cls(
            id=conv.get("id", snapshot.cid), contact_id=snapshot.cid, mode=snapshot.mode, channel=conv.get("ch"),
            user_id=conv.get("uid"), assignee=conv.get("assignee"), team=conv.get("team"),
            handoff_reason=conv.get("handoff"), queued_at=_number(conv.get("queued_at")),
            assigned_at=_number(conv.get("assigned_at")), name=profile.get("name"),
            language=profile.get("lang_set") or profile.get("lang"), window_open=window,
        )


class ProfileView(BaseModel):
    """The contact as an agent sees it next to the conversation."""

    id: str
    name: str | None
    phone: str | None
    language: str | None
    preferred_channel: str | None
    identities: list[dict[str, str]]
    attributes: dict[str, str]
    tags: list[str]
    consent: dict[str, dict[str, str]]  # channel -> purpose -> "in" | "out"
    csat: str | None

    @classmethod
    def of(cls, snapshot: Snapshot) -> ProfileView:
        profile = snapshot.profile
        consent: dict[str, dict[str, str]] = {}
        for field, state in profile.items():
            if field.startswith("cs:"):
                channel, _, purpose = field[3:].partition(":")
                consent.setdefault(channel, {})[purpose] = state
        return cls(id=snapshot.cid, name=profile.get("name"), phone=profile.get("phone"),
                   language=profile.get("lang_set") or profile.get("lang"),
                   preferred_channel=profile.get("pref_set") or profile.get("pref"),
                   identities=snapshot.identities, attributes=snapshot.attributes, tags=snapshot.tags,
                   consent=consent, csat=profile.get("csat"))


class Desk:
    def __init__(self, redis: Redis, store: ContextStore, ingest: Ingest, capacity: Capacity | None = None,
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self.redis = redis
        self.store = store
        self.ingest = ingest
        self.capacity = capacity
        self.wait_seconds = wait_seconds

    async def get(self, conversation_id: str) -> ConversationView:
        return ConversationView.of(await self._snapshot(conversation_id))

    async def queued(self, team: str | None = None, limit: int = 1000) -> list[ConversationView]:
        """Conversations waiting for an agent, oldest first."""
        return [v for v in await self._by_mode("queued", limit, oldest_first=True) if team is None or v.team == team]

    async def assigned(self, agent_id: str | None = None, limit: int = 1000) -> list[ConversationView]:
        return [v for v in await self._by_mode("assigned", limit) if agent_id is None or v.assignee == agent_id]

    async def by_mode(self, mode: str, limit: int = 1000) -> list[ConversationView]:
        """Conversations in `mode`, latest activity first."""
        return await self._by_mode(mode, limit)

    async def history(self, conversation_id: str, limit: int = 500) -> list[HistoryEntry]:
        """The contact's whole cross-channel history (notes included), oldest first."""
        snapshot = await self._snapshot(conversation_id)
        total, _ = await self.store.history(snapshot.cid, 0, 0)
        _, page = await self.store.history(snapshot.cid, max(total - limit, 0), limit)
        return page

    async def snapshot(self, conversation_id: str) -> Snapshot:
        """The contact behind the conversation (profile, attributes, tags, consent)."""
        return await self._snapshot(conversation_id)

    async def all(self, limit: int = 1000) -> list[ConversationView]:
        """What people have: queued (oldest first), then assigned."""
        return await self.queued(limit=limit) + await self.assigned(limit=limit)

    async def profile(self, conversation_id: str) -> ProfileView:
        return ProfileView.of(await self._snapshot(conversation_id))

    async def assign(self, conversation_id: str, agent_id: str, actor: str | None = None, take_over: bool = False
                     ) -> ConversationView:
        """Give the conversation to `agent_id` (`actor`: who did it, when not the agent — a supervisor or
        the router): 409 if another agent holds it (unless `take_over`) or the agent has no free slot."""
        view = await self.get(conversation_id)
        previous = view.assignee
        if self.capacity is not None and previous != agent_id and not await self.capacity.reserve(agent_id,
                                                                                                   view.contact_id):
            raise DeskError(409, f"agent {agent_id} has no free slot")
        try:
            await self._run(Assign(id=new_id("asg"), agent_id=agent_id, take_over=take_over), view.contact_id)
        except DeskError as refused:
            # a 504 is "not applied yet", not "refused": the worker will assign it, so the place stays taken
            if self.capacity is not None and previous != agent_id and refused.status != 504:
                await self.capacity.release(agent_id, view.contact_id)
            raise
        if self.capacity is not None and previous and previous != agent_id:
            await self.capacity.release(previous, view.contact_id)
        return await self.get(conversation_id)

    async def reply(self, conversation_id: str, agent_id: str, text: str, buttons: tuple[Button, ...] = (),
                    may_answer_any: bool = False) -> str:
        """Send `text` to the customer on the channel they wrote from last; only the assignee may
        (or a supervisor: `may_answer_any`). Returns the message id."""
        view = await self.get(conversation_id)
        if view.assignee != agent_id and not may_answer_any:
            raise DeskError(409, "only the agent the conversation is assigned to can reply"
                            + (f" ({view.assignee})" if view.assignee else ": claim it first"))
        command = SendText(id=new_id("agt"), text=text, buttons=buttons, author="agent", agent_id=agent_id)
        await self._run(command, view.contact_id)
        return command.id

    async def note(self, conversation_id: str, agent_id: str, text: str) -> str:
        view = await self.get(conversation_id)
        command = Note(id=new_id("note"), agent_id=agent_id, text=text)
        await self._run(command, view.contact_id)
        return command.id

    async def resolve(self, conversation_id: str, agent_id: str) -> ConversationView:
        """Done: the customer is asked for a rating; the agent's slot is free again."""
        view = await self.get(conversation_id)
        await self._run(Resolve(id=new_id("res"), agent_id=agent_id), view.contact_id)
        if self.capacity is not None:
            await self.capacity.release(agent_id, view.contact_id)
        return await self.get(conversation_id)

    async def transfer(self, conversation_id: str, actor: str, to_agent: str | None = None,
                       to_team: str | None = None) -> ConversationView:
        """To another agent (who gets it at once) or to a team's queue; `actor` transfers it."""
        if to_agent is not None:
            return await self.assign(conversation_id, to_agent, actor=actor, take_over=True)
        return await self.release(conversation_id, "transferred", team=to_team)

    async def release(self, conversation_id: str, reason: str, team: str | None = None) -> ConversationView:
        """Back to the queue (the assignee went offline, a transfer to a team, an SLA breach)."""
        view = await self.get(conversation_id)
        await self._run(SetMode(id=new_id("rel"), mode="queued", reason=reason, team=team), view.contact_id)
        if self.capacity is not None and view.assignee:
            await self.capacity.release(view.assignee, view.contact_id)
        return await self.get(conversation_id)

    async def back_to_bot(self, conversation_id: str, reason: str, notice: str | None = None) -> None:
        view = await self.get(conversation_id)
        await self._run(SetMode(id=new_id("bot"), mode="bot", reason=reason, notice=notice), view.contact_id)
        if self.capacity is not None and view.assignee:
            await self.capacity.release(view.assignee, view.contact_id)

    async def tell(self, conversation_id: str, text_key: str) -> None:
        view = await self.get(conversation_id)
        await self._run(Tell(id=new_id("tell"), text_key=text_key), view.contact_id)

    async def hand_off(self, cid: str, reason: str, team: str | None = None, command_id: str | None = None) -> bool:
        """Queue a contact's conversation for a person (the API's trigger); False if `command_id` was used."""
        return await self.ingest.command(SetMode(id=command_id or new_id("hof"), mode="queued", reason=reason,
                                                 team=team), cid)

    async def _snapshot(self, conversation_id: str) -> Snapshot:
        cid = contact_of(conversation_id)
        snapshot = await self.store.load(cid) if cid else None
        for _ in range(MERGE_HOPS):  # the contact was merged: its conversation may go on in the survivor's
            if snapshot is None or "merged_into" not in snapshot.profile:
                break
            snapshot = await self.store.load(snapshot.profile["merged_into"])
        if snapshot is None or not snapshot.conversation or snapshot.conversation.get("id") != conversation_id:
            raise DeskError(404, f"no conversation {conversation_id!r}")
        return snapshot

    async def _by_mode(self, mode: str, limit: int, oldest_first: bool = False) -> list[ConversationView]:
        read = self.redis.zrange if oldest_first else self.redis.zrevrange
        ids = [str(cid) for cid in await read(keys.by_mode(mode), 0, limit - 1)]
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for them all
            for cid in ids:
                pipe.hgetall(keys.contact(cid))
                pipe.hgetall(keys.conversation(cid))
            found = await pipe.execute()
        snapshots = [Snapshot(cid, found[2 * n], found[2 * n + 1]) for n, cid in enumerate(ids)]
        # the index is a superset of the truth (bot.context.indexes): confirm each against its contact
        return [ConversationView.of(s) for s in snapshots if s.conversation and s.mode == mode]

    async def _run(self, command: Command, cid: str) -> None:
        """Queue the command on the contact's partition and wait for the worker's answer."""
        try:
            refusal = await self.ingest.applied(command, cid, self.wait_seconds)
        except NotYetApplied as exc:
            raise DeskError(504, str(exc)) from None
        if refusal:
            raise DeskError(409, refusal)


def _number(value: str | None) -> float | None:
    return float(value) if value else None
