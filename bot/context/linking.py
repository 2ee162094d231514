"""The worker's identity step: before a turn, whose event this is and which identities it links.

`prepare` runs before every turn, in the partition worker that owns the event's contact:

1. **Routing.** The contact id travels with the event from ingest. If the contact was merged since,
   its profile is a tombstone (`merged_into`) and the event is appended again for the survivor — on
   the survivor's partition, whose worker alone may write the survivor. If the contact was erased
   since (empty profile, and its identity's index key no longer points at it), the event goes to
   whoever the identity resolves to now: a new, empty contact. Neither costs a round trip on the
   common path (a known, live contact).
2. **Links.** A shared phone (Telegram request_contact, a Viber contact) gives the number to this
   contact, or — when another contact owns it — absorbs that contact into this one. A link code
   (`/start CODE`, Viber's deep-link context, or a message that is exactly a code) absorbs the
   contact that issued it. The survivor is always the contact being processed, so the turn goes on
   in this worker with the merged context: the flow begun on the other channel continues here.
3. **The offer.** It binds `offer_links` (a dialog action) to this contact for the turn.

A link answers the customer itself (`notice`, dialog texts named in `NOTICES`); the message does
not reach the dialogue engine, so a half-finished flow is not disturbed by a code or a phone.

`settle` runs after the turn's commit: if the contact was merged away or erased while the turn ran,
what the turn wrote is folded into the survivor, or erased too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from bot.context import keys
from bot.context.identity import Identities
from bot.context.link_actions import LinkOffer, bind
from bot.context.links import LinkCodes, as_code
from bot.context.merge import Merger, UnknownContact
from bot.context.phones import BadPhone, normalise
from bot.context.store import ContextStore, Snapshot
from bot.dialogue.language import reply_language
from bot.dialogue.spec import Text
from bot.models import Channel, EventKind, InboundEvent, Reply

log = logging.getLogger(__name__)

NOTICES = ("link_done", "link_same", "link_expired", "link_used", "link_unknown", "link_locked", "phone_saved")
Forward = Callable[[str, InboundEvent, str], Awaitable[None]]  # (contact id, event, event key)
Erase = Callable[[str], Awaitable[object]]


@dataclass(frozen=True)
class Prepared:
    """The context a turn runs with, and the answer already given (None: the dialog answers)."""

    snapshot: Snapshot
    notice: list[Reply] | None = None


class Linker:
    def __init__(
        self,
        store: ContextStore,
        identities: Identities,
        merger: Merger,
        codes: LinkCodes,
        forward: Forward,
        erase: Erase,
        texts: Mapping[str, Text],
        deep_links: Mapping[Channel, Callable[[str], str]],
        default_language: str,
    ) -> None:
        self.store = store
        self.identities = identities
        self.merger = merger
        self.codes = codes
        self.forward = forward
        self.erase = erase
        self.texts = texts
        self.deep_links = deep_links
        self.default_language = default_language
        if missing := [name for name in NOTICES if name not in texts]:
            log.warning("the dialogs have no texts %s: links and shared phones will not be answered", missing)

    async def prepare(self, cid: str, snapshot: Snapshot, event: InboundEvent, source: str) -> Prepared | None:
        """The context to run the turn with; None when the event was handed to another contact.
        `source` names the event's stream entry (`Lane.source`): a replayed forwarding is dropped by it."""
        owner = await self._owner(cid, snapshot, event)
        if owner != cid:
            await self.forward(owner, event, f"fwd:{cid}:{source}")
            return None
        bind(LinkOffer(self.codes, cid, self.deep_links))
        if event.kind not in (EventKind.message, EventKind.opened):
            return Prepared(snapshot)
        notice = await self._link(cid, event)
        if notice is None:
            return Prepared(snapshot)
        merged = await self.store.load(cid)
        return Prepared(merged, self._say(notice, merged, event) if event.kind is EventKind.message else None)

    async def settle(self, cid: str, snapshot: Snapshot, existed: bool, merged_into: str | None) -> None:
        """After the commit: `existed`/`merged_into` describe the profile as the commit found it."""
        if merged_into:
            await self.merger.fold(cid)
        elif snapshot.profile and not existed:
            await self.erase(cid)

    async def _owner(self, cid: str, snapshot: Snapshot, event: InboundEvent) -> str:
        if snapshot.profile.get("merged_into") or snapshot.profile.get("merging_into"):
            return await self.identities.live(cid)
        if snapshot.profile:
            return cid
        current = await self.identities.owner(event.channel, event.user_id)
        return current or await self.identities.resolve(event.channel, event.user_id)

    async def _link(self, cid: str, event: InboundEvent) -> str | None:
        """Make the links the event asks for; the name of the notice to answer with, if any."""
        if event.contact_phone:
            return await self._share_phone(cid, event.contact_phone)
        explicit = event.start_param is not None
        code = as_code(event.start_param if explicit else event.text)
        if code is None:
            return None
        redemption = await self.codes.redeem(code, event.channel, event.user_id)
        if redemption.status == "ok" and redemption.contact:
            issuer = await self.identities.live(redemption.contact)
            if issuer == cid:
                return "link_same"
            try:
                await self.merger.merge(cid, issuer, "link code")
            except UnknownContact:  # erased after it asked for the code
                return "link_unknown"
            return "link_done"
        if explicit or redemption.status in ("expired", "used"):
            return f"link_{redemption.status}"
        return None  # an ordinary message that happens to look like a code: the dialog answers it

    async def _share_phone(self, cid: str, raw: str) -> str | None:
        try:
            e164 = normalise(raw, self.identities.region)
        except BadPhone:
            log.info("contact %s shared an unreadable phone %r", cid, raw)
            return None
        owner = await self.identities.live(await self.identities.claim_phone(cid, e164))
        if owner != cid:
            await self.merger.merge(cid, owner, "shared phone", {keys.phone(e164)})
        return "phone_saved"

    def _say(self, name: str, snapshot: Snapshot, event: InboundEvent) -> list[Reply]:
        text = self.texts.get(name)
        if text is None:
            return []
        profile, hint = snapshot.profile, (event.language or "").split("-")[0]
        language = reply_language(
            event.text, chosen=profile.get("lang_set"), current=profile.get("lang") or hint,
            default=self.default_language,
        )
        context = {"contact": {"name": snapshot.profile.get("name") or event.user_name}, "channel": event.channel}
        try:
            return [Reply(text=text.render(language, context))]
        except Exception:  # a broken text must not fail the link that already happened
            log.exception("text %r failed to render", name)
            return []
