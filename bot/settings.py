"""One validated settings object: `config/omnihub.yaml` (or `OMNIHUB_CONFIG`), then the environment.

The environment names are an external contract (DESIGN.md), so they are mapped explicitly below
rather than derived from field names. A bad value stops start-up with one line naming the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.crm.bitrix24 import Bitrix24Settings
from bot.models import Channel

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "omnihub.yaml"


class ConfigError(Exception):
    """Start-up refused: the message is one line that names the setting."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelegramSettings(Section):
    enabled: bool = True
    bot_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    api_base: str = "https://api.telegram.org"
    bot_username: str = "omnihub_demo_bot"


class TwilioSettings(Section):
    enabled: bool = True
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    sms_from: str | None = None
    whatsapp_from: str | None = None
    api_base: str = "https://api.twilio.com"
    # a WhatsApp template (Content SID) for service messages outside the 24-hour window
    whatsapp_fallback_template: str | None = None


class ViberSettings(Section):
    enabled: bool = True
    auth_token: SecretStr | None = None
    bot_name: str = "Omnihub"
    bot_avatar: str | None = None
    welcome_text: str = "Hello! Write to us here — we answer in English and Russian. / Здравствуйте! Напишите нам."
    api_base: str = "https://chatapi.viber.com/pa"


class Rate(Section):
    """A token bucket: `per_second` sustained, up to `burst` at once after a quiet spell."""

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


class RateLimits(Section):
    """Provider send limits, held in Redis and shared by every worker (bot.pipeline.ratelimit).

    They apply to channels with real credentials; a channel on the built-in emulator is not paced
    unless `sandbox` is on, so the sandbox and the benchmark run at full speed. A channel missing
    from `per_sender` / `per_chat` has no such limit.
    """

    sandbox: bool = False
    # per bot token / sender number; Telegram ~30 msg/s per bot, WhatsApp 80 MPS, SMS the number's
    # MPS (a US long code 1, toll-free 3, short code 100: Twilio queues what goes over)
    per_sender: dict[str, Rate] = Field(default_factory=lambda: {
        "telegram": Rate(per_second=30, burst=30),
        "whatsapp": Rate(per_second=80, burst=80),
        "sms": Rate(per_second=1, burst=10),
    })
    # per chat where the provider has such a limit: Telegram about 1 msg/s, with short bursts allowed
    per_chat: dict[str, Rate] = Field(default_factory=lambda: {"telegram": Rate(per_second=1, burst=5)})
    # the share of each bucket bulk (campaign) sends leave untouched for live replies
    bulk_reserve: float = Field(0.25, ge=0, lt=1)


class PipelineSettings(Section):
    partitions: int = Field(16, ge=1, le=1024)
    lease_seconds: float = Field(5.0, gt=0.5)
    batch: int = Field(64, ge=1, le=1000)
    stream_maxlen: int = Field(100_000, ge=1000)
    # commands' (Idempotency-Key) and forwarded events' dedupe; a provider's events are remembered as
    # long as that provider retries (bot.pipeline.ingest.RETRY_SECONDS)
    dedupe_ttl_seconds: int = Field(86_400, ge=60)
    send_attempts: int = Field(5, ge=1, le=20)
    entry_attempts: int = Field(3, ge=1, le=100)  # tries of a failing inbound entry before it is dead-lettered
    send_concurrency: int = Field(64, ge=1, le=1000)
    rate_limits: RateLimits = RateLimits()


class ConsentTexts(Section):
    """Replies to the SMS keywords, {language: text}; a language left out keeps the built-in text
    (bot.pipeline.keywords). "en" is used when the customer's language has none."""

    stopped: dict[str, str] = Field(default_factory=dict)
    started: dict[str, str] = Field(default_factory=dict)
    help: dict[str, str] = Field(default_factory=dict)


FALLBACK_ORDER: tuple[Channel, ...] = ("telegram", "viber", "whatsapp", "sms")


class ContextSettings(Section):
    history_cap: int = Field(200, ge=10, le=10_000)
    default_region: str = "RU"
    default_language: str = "en"
    # an SMS STOP also withdraws marketing consent on every other channel
    stop_revokes_all_marketing: bool = True
    consent_texts: ConsentTexts = ConsentTexts()
    # after the preferred channel, the order a "best channel" send tries (bot.pipeline.reach)
    fallback_order: list[Channel] = Field(default_factory=lambda: list(FALLBACK_ORDER))


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_PERIOD = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class BusinessHours(Section):
    """When a team answers, in its own time zone. No `week`: around the clock. A period is
    "HH:MM-HH:MM" in wall-clock time; one that ends at or before its start runs past midnight. A
    holiday cancels the periods that start on it (bot.handoff.hours)."""

    timezone: str = "UTC"
    week: dict[Weekday, list[str]] | None = None
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("week")
    @classmethod
    def _periods(cls, week: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if week is None:
            return None
        for day, periods in week.items():
            for period in periods:
                if not _PERIOD.match(period) or period[:5] == period[6:]:
                    raise ValueError(f"{day}: {period!r} is not a period like 09:00-18:00")
        if not any(week.values()):
            raise ValueError("a team must be open some time (leave `week` out for around the clock)")
        return week


class TeamSettings(Section):
    """A team: who it serves (skills; empty = anyone), when, and what happens when nobody answers."""

    languages: list[str] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    hours: BusinessHours = BusinessHours()
    auto_assign: bool = True  # the router gives chats to agents; off: agents claim them from the queue
    queue_timeout_seconds: float = Field(600, gt=0)
    on_timeout: Literal["escalate", "bot"] = "bot"
    escalate_to: str | None = None  # the team escalations go to; none: the same team, at the front
    first_response_sla_seconds: float = Field(300, gt=0)
    reply_sla_seconds: float = Field(600, gt=0)


class HandoffRule(Section):
    """Customers with this tag (or this attribute set to a value other than false/0/no) go straight
    to a person of `team` whenever they write to the bot — e.g. `{tag: vip, team: vip}`."""

    tag: str | None = None
    attribute: str | None = None
    team: str | None = None
    reason: str = "rule"

    def matches(self, tags: list[str], attributes: Mapping[str, str]) -> bool:
        if self.tag is not None and self.tag in tags:
            return True
        value = attributes.get(self.attribute or "")
        return value is not None and value.strip().lower() not in ("", "false", "0", "no")


class HandoffSettings(Section):
    rules: list[HandoffRule] = Field(default_factory=list)
    default_team: str = "support"
    teams: dict[str, TeamSettings] = Field(default_factory=lambda: {"support": TeamSettings()})
    idle_seconds: float = Field(120, gt=0)  # an agent with no heartbeat for this long is offline
    agent_capacity: int = Field(5, ge=1, le=1000)  # conversations at once, for a new agent
    router_interval_seconds: float = Field(0.2, gt=0, le=10)
    router_lease_seconds: float = Field(5.0, gt=0.5)


class WebhookConfig(Section):
    """A subscription declared in the configuration file (kept in step with Redis at start)."""

    url: str = Field(pattern=r"^https?://")
    secret: SecretStr
    events: list[str] = Field(default_factory=lambda: ["*"])


# What receivers know from Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
SVIX_SCHEDULE = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


class CrmSettings(Section):
    """The event feed and its consumers (bot.crm): webhook subscriptions and the CRM adapters."""

    retry_schedule_seconds: list[float] = Field(default_factory=lambda: list(SVIX_SCHEDULE), min_length=1)
    timeout_seconds: float = Field(15.0, gt=0, le=120)
    concurrency: int = Field(32, ge=1, le=1000)  # deliveries in flight per partition and subscription
    retention_hours: float = Field(72.0, ge=0)  # delivered events kept this long, for replays
    disable_after_days: float = Field(5.0, gt=0)  # a subscription failing this long is disabled
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    bitrix24: Bitrix24Settings = Field(default_factory=Bitrix24Settings)


class CampaignSettings(Section):
    """Campaigns (bot.campaigns): the contact pressure budget every campaign shares, and the pace."""

    per_day: int = Field(2, ge=1)  # marketing messages a contact gets at most, across campaigns and channels
    per_week: int = Field(5, ge=1)
    backlog: int = Field(500, ge=1)  # campaign messages waiting in a partition's bulk lane before more are released


class RasaSettings(Section):
    """An optional Rasa server (bot.rasa): `dialogue` — Rasa's REST channel answers; `nlu` — Rasa's
    `/model/parse` classifies and our dialogs answer. Unset `url`: the built-in engine alone."""

    url: str | None = Field(None, pattern=r"^https?://")
    mode: Literal["dialogue", "nlu"] = "dialogue"
    token: SecretStr | None = None  # what Rasa's `action_endpoint: token:` sends to /rasa/webhook
    actions_url: str | None = Field(None, pattern=r"^https?://")  # the team's own rasa-sdk server, for other actions
    threshold: float = Field(0.6, ge=0, le=1)  # intent confidence below this is "not understood" (nlu mode)
    parse_timeout_seconds: float = Field(1.0, gt=0, le=30)
    dialogue_timeout_seconds: float = Field(10.0, gt=0, le=120)  # Rasa may call actions inside a turn
    pause_seconds: float = Field(2.0, ge=0, le=300)  # after a failure, turns skip Rasa this long


class Settings(Section):
    redis_url: str | None = None
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    admin_token: SecretStr | None = None
    data_dir: Path = Path(".omnihub")
    dialogs_dir: Path = Path(__file__).resolve().parent.parent / "dialogs"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    sandbox_auto_read: bool = True  # the sandbox's Viber and WhatsApp read every message at once (false: when told)
    sms_cost: dict[str, float] = Field(default_factory=lambda: {"sms": 0.05, "whatsapp": 0.005})
    telegram: TelegramSettings = TelegramSettings()
    twilio: TwilioSettings = TwilioSettings()
    viber: ViberSettings = ViberSettings()
    pipeline: PipelineSettings = PipelineSettings()
    context: ContextSettings = ContextSettings()
    handoff: HandoffSettings = HandoffSettings()
    crm: CrmSettings = CrmSettings()
    campaigns: CampaignSettings = CampaignSettings()
    rasa: RasaSettings = RasaSettings()

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def local_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def sandbox(self, channel: str) -> bool:
        """A channel with no credentials runs against the built-in emulator."""
        if channel == "telegram":
            return self.telegram.bot_token is None
        if channel in ("sms", "whatsapp"):
            return self.twilio.account_sid is None
        return self.viber.auth_token is None


# environment name -> path in the settings tree (the contract of DESIGN.md)
ENV: dict[str, tuple[str, ...]] = {
    "REDIS_URL": ("redis_url",),
    "OMNIHUB_PUBLIC_URL": ("public_url",),
    "OMNIHUB_HOST": ("host",),
    "OMNIHUB_PORT": ("port",),
    "OMNIHUB_ADMIN_TOKEN": ("admin_token",),
    "OMNIHUB_DATA_DIR": ("data_dir",),
    "OMNIHUB_DIALOGS": ("dialogs_dir",),
    "TELEGRAM_BOT_TOKEN": ("telegram", "bot_token"),
    "TELEGRAM_WEBHOOK_SECRET": ("telegram", "webhook_secret"),
    "TELEGRAM_API_BASE": ("telegram", "api_base"),
    "TWILIO_ACCOUNT_SID": ("twilio", "account_sid"),
    "TWILIO_AUTH_TOKEN": ("twilio", "auth_token"),
    "TWILIO_SMS_FROM": ("twilio", "sms_from"),
    "TWILIO_WHATSAPP_FROM": ("twilio", "whatsapp_from"),
    "TWILIO_API_BASE": ("twilio", "api_base"),
    "VIBER_AUTH_TOKEN": ("viber", "auth_token"),
    "VIBER_BOT_NAME": ("viber", "bot_name"),
    "VIBER_API_BASE": ("viber", "api_base"),
    "BITRIX24_WEBHOOK_URL": ("crm", "bitrix24", "webhook_url"),
    "OMNIHUB_RASA_URL": ("rasa", "url"),
    "OMNIHUB_RASA_MODE": ("rasa", "mode"),
    "OMNIHUB_RASA_TOKEN": ("rasa", "token"),
    "OMNIHUB_RASA_ACTIONS_URL": ("rasa", "actions_url"),
}
_ENV_OF = {path: name for name, path in ENV.items()}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    environ = os.environ if environ is None else environ
    path = Path(environ.get("OMNIHUB_CONFIG") or DEFAULT_CONFIG)
    data = _read_yaml(path) if path.exists() or "OMNIHUB_CONFIG" in environ else {}
    for name, keys in ENV.items():
        if environ.get(name):
            _put(data, keys, environ[name])
    for key, value in overrides.items():
        _put(data, tuple(key.split("__")), value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        keys = tuple(str(k) for k in error["loc"])
        env = _ENV_OF.get(keys)
        where = f"{'.'.join(keys)}" + (f" (env {env})" if env else f" (in {path})")
        raise ConfigError(f"bad setting {where}: {error['msg']}") from None
    _check_secrets(settings)
    return settings


def _check_secrets(s: Settings) -> None:
    """A channel given part of its credentials is a mistake worth stopping for."""
    if s.twilio.enabled and s.twilio.account_sid and not s.twilio.auth_token:
        raise ConfigError("bad setting twilio.auth_token (env TWILIO_AUTH_TOKEN): required with TWILIO_ACCOUNT_SID")
    if s.twilio.enabled and s.twilio.account_sid and not (s.twilio.sms_from or s.twilio.whatsapp_from):
        raise ConfigError(
            "bad setting twilio.sms_from (env TWILIO_SMS_FROM): a sender number is required with "
            "TWILIO_ACCOUNT_SID (or TWILIO_WHATSAPP_FROM)"
        )
    if s.telegram.enabled and s.telegram.bot_token and s.public_url and not s.telegram.webhook_secret:
        raise ConfigError(
            "bad setting telegram.webhook_secret (env TELEGRAM_WEBHOOK_SECRET): required when "
            "OMNIHUB_PUBLIC_URL makes Telegram use a webhook"
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"bad setting OMNIHUB_CONFIG: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}:1: the configuration must be a mapping")
    return loaded


def _put(data: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value
