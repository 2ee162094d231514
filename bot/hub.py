"""Everything one process runs, built once from the settings.

`omnihub run` builds a Hub with every part; `omnihub api` only the webhook/API side; `omnihub worker`
only the partition workers and senders. Clients (Redis, provider SDKs) are created here once per
process lifetime and handed to the parts that need them — no part creates its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.applications import Starlette

from bot.campaigns.scheduler import Scheduler
from bot.campaigns.stats import CampaignStats
from bot.campaigns.steps import Reach
from bot.campaigns.store import Campaigns
from bot.context import keys
from bot.context.identity import Identities
from bot.context.linking import Linker
from bot.context.links import LinkCodes
from bot.context.merge import Merger
from bot.context.phrases import buttons_words
from bot.context.privacy import Privacy
from bot.context.profiles import Profiles
from bot.context.store import ContextStore
from bot.crm.bitrix24 import Bitrix24Sink
from bot.crm.feed import Feed
from bot.crm.outbox import Emitter
from bot.crm.sinks import Sink
from bot.crm.subscriptions import Subscriptions
from bot.dialogue.loader import load_dialogs
from bot.handoff.agents import AgentStore
from bot.handoff.demo import ensure_demo_agent
from bot.handoff.desk import Desk
from bot.handoff.notices import Notices
from bot.handoff.queue_notices import QueueNotices
from bot.handoff.router import Router
from bot.handoff.teams import Teams
from bot.models import Channel, InboundEvent
from bot.pipeline.dead_letters import DeadLetters
from bot.pipeline.ingest import Ingest
from bot.pipeline.keywords import ConsentKeywords
from bot.pipeline.partitions import PartitionLeases
from bot.pipeline.ratelimit import RateLimiter, senders
from bot.pipeline.sender import Sender
from bot.pipeline.streams import Backoff
from bot.pipeline.turns import TurnHandler
from bot.pipeline.worker import Worker
from bot.rasa.backend import dialogue_backend
from bot.rasa.client import RasaClient
from bot.redis_server import REDIS_FAILURES
from bot.sandbox import emulators as sandbox
from bot.settings import Settings
from connectors.base import AcknowledgesCallbacks, Connector, DeepLinks, Polls
from connectors.telegram import TelegramConnector
from connectors.twilio import TwilioConnector
from connectors.viber import ViberConnector

log = logging.getLogger(__name__)
REGISTER_RETRY_CEILING = 60.0  # seconds between webhook registration attempts, at most
SWEEP_EVERY_SECONDS = 30.0  # how often a worker looks for merges cut short by a crash
READY_REDIS_SECONDS = 2.0  # /readyz: Redis must answer within this



@dataclass
class Hub:
    settings: Settings
    redis: Redis
    run_api: bool = True
    run_workers: bool = True
    connectors: dict[Channel, Connector] = field(default_factory=dict)
    webhooks: dict[str, Connector] = field(default_factory=dict)  # webhook path name -> connector
    emulators: dict[str, Starlette] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    channel_state: dict[Channel, str] = field(default_factory=dict)  # "live", or why not (for /readyz)

    def __post_init__(self) -> None:
        s = self.settings
        self.sandboxed = frozenset(c for c in ("telegram", "sms", "whatsapp", "viber") if s.sandbox(c))
        self.store = ContextStore(self.redis, s.context.history_cap)
        self.rasa = RasaClient.of(s.rasa, self.redis) if s.rasa.url else None  # what the workers' turns ask
        self.identities = Identities(self.redis, self.store, s.context.default_region)
        self.ingest = Ingest(self.redis, self.identities, s.pipeline.partitions, s.pipeline.dedupe_ttl_seconds)
        self.merger = Merger(self.redis, self.identities, s.context.history_cap, s.pipeline.dedupe_ttl_seconds,
                             s.pipeline.partitions)
        self.privacy = Privacy(self.redis, self.identities, s.pipeline.partitions)
        self.profiles = Profiles(self.redis)
        self.dead_letters = DeadLetters(self.redis, s.pipeline.partitions)
        self.agents = AgentStore(self.redis, s.handoff.idle_seconds, s.handoff.agent_capacity)
        self.teams = Teams(self.redis, s.handoff)
        self.desk = Desk(self.redis, self.store, self.ingest, self.agents)
        self.subscriptions = Subscriptions(self.redis, s.pipeline.partitions)
        self.emitter = Emitter(self.redis, s.pipeline.partitions)
        adapters: list[Sink] = [CampaignStats(self.redis)]
        if s.crm.bitrix24.active:
            adapters.append(Bitrix24Sink(self.redis, self.store, s.crm.bitrix24))
        self.campaigns = Campaigns(self.redis, s.pipeline.partitions)
        self.feed = Feed(self.redis, s.crm, self.subscriptions, self.emitter, adapters)
        self.settings = self._with_sandbox(s)
        self._build_connectors()
        self.acknowledgers = {p: k for p, k in self.webhooks.items() if isinstance(k, AcknowledgesCallbacks)}

    @property
    def public_url(self) -> str:
        return self.settings.public_url or self.settings.local_url

    @property
    def all_sandbox(self) -> bool:
        """No channel has real credentials: the hub is a sandbox to try things in."""
        return bool(self.connectors) and all(c in self.sandboxed for c in self.connectors)

    @property
    def sandbox_channels(self) -> list[str]:
        return [c for c in self.connectors if c in self.sandboxed]

    def _with_sandbox(self, s: Settings) -> Settings:
        """Point channels without credentials at the built-in emulators (mounted by the API)."""
        base = f"{s.local_url}/emulator"
        telegram, twilio, viber = s.telegram, s.twilio, s.viber
        if s.sandbox("telegram"):
            telegram = telegram.model_copy(update={"api_base": f"{base}/telegram",
                                                   "webhook_secret": SecretStr(sandbox.TELEGRAM_SECRET)})
        if s.sandbox("sms"):
            twilio = twilio.model_copy(update={
                "api_base": f"{base}/twilio", "account_sid": sandbox.TWILIO_SID,
                "auth_token": SecretStr(sandbox.TWILIO_TOKEN), "sms_from": sandbox.TWILIO_SMS_FROM,
                "whatsapp_from": sandbox.TWILIO_WHATSAPP_FROM,
            })
        if s.sandbox("viber"):
            viber = viber.model_copy(update={"api_base": f"{base}/viber", "auth_token": SecretStr(sandbox.VIBER_TOKEN)})
        return s.model_copy(update={"telegram": telegram, "twilio": twilio, "viber": viber})

    @staticmethod
    def _secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    def _build_connectors(self) -> None:
        s = self.settings
        if s.telegram.enabled:
            token = self._secret(s.telegram.bot_token) or sandbox.TELEGRAM_TOKEN
            self.connectors["telegram"] = self.webhooks["telegram"] = TelegramConnector(s.telegram, token)
        if s.twilio.enabled:
            status_url = f"{self.public_url}/webhooks/twilio/status"
            if s.twilio.sms_from:
                self.connectors["sms"] = TwilioConnector(s.twilio, "sms", status_url)
            if s.twilio.whatsapp_from:
                self.connectors["whatsapp"] = TwilioConnector(s.twilio, "whatsapp", status_url)
            first = self.connectors.get("sms") or self.connectors.get("whatsapp")
            if first is not None:
                self.webhooks["twilio"] = first
        if s.viber.enabled:
            token = self._secret(s.viber.auth_token)
            self.connectors["viber"] = self.webhooks["viber"] = ViberConnector(s.viber, token)

    def build_emulators(self) -> dict[str, Starlette]:
        """The provider emulators for channels in sandbox mode, to be mounted under /emulator."""
        wanted = {"telegram": "telegram", "sms": "twilio", "whatsapp": "twilio", "viber": "viber"}
        providers = {wanted[c] for c in self.connectors if c in self.sandboxed}
        self.emulators = sandbox.create_emulators(self.public_url, sorted(providers),
                                                  auto_read=self.settings.sandbox_auto_read)
        return self.emulators

    async def start(self) -> None:
        """Open clients, then (once the server answers) register webhooks and start working.

        Registration waits for our own `/healthz` because Viber checks a webhook URL the moment it is
        set. Sandbox emulators are built pointing at our webhooks, so nothing is registered for them.
        A channel whose registration fails is retried in the background (and `/readyz` says so); the
        workers and the other channels do not wait for it.
        """
        registering = {name for name in self.connectors
                       if self.run_api and self.settings.public_url and name not in self.sandboxed}
        for name, connector in self.connectors.items():
            await connector.start(None)
            self.channel_state[name] = "registering" if name in registering else "live"
        if self.run_api and self.all_sandbox:
            await ensure_demo_agent(self.agents)  # so a newcomer can sign in to /console at once
        self._tasks.append(asyncio.create_task(self._go_live(registering), name="go-live"))

    async def _go_live(self, registering: set[Channel]) -> None:
        if registering:
            await self._until_serving()
            for name in registering:
                self._tasks.append(asyncio.create_task(self._register(name), name=f"register-{name}"))
        for name, poller in self.pollers().items():
            self._tasks.append(asyncio.create_task(poller.poll(self.accept, self._stop), name=f"{name}-poll"))
        if self.run_workers:
            await self._run_workers()

    async def _register(self, name: Channel) -> None:
        """Register `name`'s webhook until the provider takes it (with backoff), keeping it able to send."""
        connector, backoff = self.connectors[name], Backoff(first=1.0, ceiling=REGISTER_RETRY_CEILING)
        while not self._stop.is_set():
            try:
                await connector.start(self.public_url)  # the client is open already; this registers
            except Exception as exc:
                delay = backoff.next_delay()
                self.channel_state[name] = f"webhook registration failed, retrying in {delay:.0f} s: {exc}"
                log.warning("%s webhook registration failed; retrying in %.0f s: %s", name, delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                continue
            self.channel_state[name] = "live"
            log.info("%s webhook registered at %s", name, self.public_url)
            return

    async def _until_serving(self) -> None:
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.settings.local_url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.05)

    def pollers(self) -> dict[Channel, Polls]:
        """Real accounts that cannot reach us (no public URL) and can be asked instead (Telegram's getUpdates)."""
        if not self.run_api or self.settings.public_url is not None:
            return {}
        return {c: k for c, k in self.connectors.items() if isinstance(k, Polls) and c not in self.sandboxed}

    def partition_parts(self) -> tuple[Worker, Sender]:
        """The worker and the sender that work a partition, built from the settings (once per process)."""
        s = self.settings
        dialogs = load_dialogs(s.dialogs_dir)
        self.store.phrases.learn([*(words for text in dialogs.texts.values() for words in text.fixed.values()),
                                  *(buttons_words(row) for row in dialogs.fixed_buttons())])
        backend = dialogue_backend(s.rasa, dialogs, self.rasa)
        keywords = ConsentKeywords(s.context.stop_revokes_all_marketing, s.context.consent_texts,
                                   s.context.default_language)
        turns = TurnHandler(backend, {c: k.capabilities for c, k in self.connectors.items()},
                            s.context.default_language, keywords, Notices(dialogs.texts, s.context.default_language),
                            s.handoff.rules, s.handoff.default_team)
        deep_links = {c: k.deep_link for c, k in self.connectors.items() if isinstance(k, DeepLinks)}
        linker = Linker(self.store, self.identities, self.merger, LinkCodes(self.redis), self.ingest.forward,
                        self.privacy.erase, dialogs.texts, deep_links, s.context.default_language)
        reach = Reach(enabled=frozenset(self.connectors), order=s.context.fallback_order,
                      whatsapp_template=s.twilio.whatsapp_fallback_template is not None,
                      default_language=s.context.default_language, per_day=s.campaigns.per_day,
                      per_week=s.campaigns.per_week,
                      numbered=frozenset(c for c, k in self.connectors.items() if not k.capabilities.native_buttons))
        worker = Worker(self.redis, self.store, turns, linker, s.pipeline.batch, s.pipeline.entry_attempts,
                        QueueNotices(self.redis, self.teams, self.ingest).entered, self.campaigns, reach)
        limiter = RateLimiter(self.redis, s.pipeline.rate_limits, senders(s, self.connectors, self.sandboxed))
        sender = Sender(self.redis, self.store, self.connectors, s.pipeline.batch, s.pipeline.send_attempts,
                        s.pipeline.send_concurrency, limiter, s.twilio.whatsapp_fallback_template, s.sms_cost)
        return worker, sender

    async def _run_workers(self) -> None:
        s = self.settings
        worker, sender = self.partition_parts()

        await self.subscriptions.configure(s.crm.webhooks)
        scheduler = Scheduler(self.redis, self.ingest, self.campaigns, backlog=s.campaigns.backlog)

        async def run_partition(p: int, halt: asyncio.Event) -> None:
            await self.store.phrases.publish()  # before this partition's turns name them (bot.context.phrases)
            async with asyncio.TaskGroup() as group:  # one fails: the others stop too, the lease is freed
                group.create_task(worker.run(p, halt))
                group.create_task(sender.run(p, halt))
                group.create_task(self.feed.run(p, halt))
                group.create_task(scheduler.run(p, halt))

        leases = PartitionLeases(self.redis, s.pipeline.partitions, s.pipeline.lease_seconds, run_partition)
        router = Router(self.redis, self.desk, self.agents, self.teams, s.handoff)
        await asyncio.gather(leases.run(self._stop), self._sweep_merges(), router.run(self._stop))

    async def _sweep_merges(self) -> None:
        """Finish merges whose merger died between two of their steps (bot.context.merge, journals).
        Every worker sweeps; replaying a journal twice at once is safe."""
        backoff = Backoff(first=1.0, ceiling=SWEEP_EVERY_SECONDS)
        while not self._stop.is_set():
            wait = SWEEP_EVERY_SECONDS
            try:
                await self.merger.sweep()
                backoff.reset()
            except REDIS_FAILURES as exc:
                wait = backoff.next_delay()
                log.warning("merge sweep failed (%s); again in %.0f s", exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait)

    async def readiness(self) -> tuple[bool, dict[str, object]]:
        """Whether this hub can take and answer traffic, and why not: Redis must answer and every
        partition must have a live worker (a lease). A channel whose webhook is not registered yet
        is reported but does not make the hub unready — the other channels work."""
        problems: list[str] = []
        unowned: list[int] = []
        try:
            async with asyncio.timeout(READY_REDIS_SECONDS), self.redis.pipeline(transaction=False) as pipe:
                for p in range(self.settings.pipeline.partitions):
                    pipe.get(keys.lease(p))
                owners = await pipe.execute()
            unowned = [p for p, owner in enumerate(owners) if owner is None]
        except REDIS_FAILURES as exc:
            problems.append(f"redis unavailable: {exc}")
        except TimeoutError:  # up but stalled: commands wait for it (bot.redis_server.kernel_timeouts)
            problems.append(f"redis unavailable: no answer within {READY_REDIS_SECONDS:g} s")
        if unowned:
            problems.append(f"no worker holds partitions {unowned}")
        channels = {name: self.channel_state.get(name, "starting") for name in self.connectors}
        rasa = {} if self.rasa is None else {"rasa": self.rasa.state()}
        live = all(v == "live" for v in channels.values()) and rasa.get("rasa", "answering") == "answering"
        status = "unavailable" if problems else "ready" if live else "degraded"
        return not problems, {"status": status, "problems": problems, "channels": channels,
                              "sandbox": self.sandbox_channels, **rasa}

    async def accept(self, events: list[InboundEvent]) -> None:
        await self.ingest(events)

    async def acknowledge(self, provider: str, events: list[InboundEvent]) -> None:
        """Confirm what the provider waits for (Telegram's button spinner); in the background, the
        webhook answer must not wait for it."""
        connector = self.acknowledgers.get(provider)
        if connector is not None and connector.awaits_acknowledgement(events):
            task = asyncio.create_task(connector.acknowledge(events))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        for connector in self.connectors.values():
            with contextlib.suppress(Exception):
                await connector.close()
        await self.feed.close()
        if self.rasa is not None:
            await self.rasa.aclose()
