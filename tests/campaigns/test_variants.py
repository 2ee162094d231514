"""A/B variants: each recipient gets the text of its variant (the same one every time), the figures
count per variant, and the significance note says whether a difference is more than chance."""

from __future__ import annotations

import asyncio
import time

from bot.campaigns.model import CampaignIn
from bot.campaigns.stats import VariantFigures, significance
from tests.campaigns.test_campaigns import tagged
from tests.campaigns.test_cascade import launch
from tests.conftest import HubFactory
from tests.pipeline.customer import small_hub

AB = {"name": "a/b", "purpose": "service", "audience": {"tags": ["ab"]}, "split": {"A": 1, "B": 1},
      "steps": [{"channel": "preferred", "text": "plain", "variants": {"A": "text A", "B": "text B"},
                 "until": "sent", "within": 1}]}


async def test_each_recipient_gets_its_variant_and_the_figures_split(hub: HubFactory) -> None:
    async with small_hub(hub) as client:
        people = [await tagged(client, "telegram", f"75000{n:02d}", "ab") for n in range(16)]
        campaign = await launch(client, AB)
        definition = CampaignIn.model_validate(AB)
        for customer, cid in people:
            [message] = await customer.replies(1)
            assert message["text"] == f"text {definition.variant_of(campaign, cid)}"
        deadline = time.monotonic() + 10
        while True:
            stats = (await client.http.get(f"/api/v1/campaigns/{campaign}/stats")).json()
            if sum(v["sent"] for v in stats["variants"].values()) >= 16:
                break
            assert time.monotonic() < deadline, stats
            await asyncio.sleep(0.1)
    expected = {name: sum(1 for _, cid in people if definition.variant_of(campaign, cid) == name) for name in "AB"}
    assert {name: v["sent"] for name, v in stats["variants"].items()} == {k: n for k, n in expected.items() if n}
    assert len(expected) == 2 and all(expected.values())  # 16 recipients split both ways


def test_the_significance_note_tells_chance_from_a_difference() -> None:
    clear = significance({"A": VariantFigures(sent=1000, converted=120), "B": VariantFigures(sent=1000, converted=80)})
    assert clear is not None and "significant at 5 %" in clear and "A 12.0 %" in clear
    noise = significance({"A": VariantFigures(sent=100, converted=6), "B": VariantFigures(sent=100, converted=5)})
    assert noise is not None and "not significant yet" in noise
    assert significance({"A": VariantFigures(sent=10)}) is None


def test_a_split_must_name_every_variant_a_step_uses() -> None:
    bad = {**AB, "split": {"A": 1, "C": 1}}
    try:
        CampaignIn.model_validate(bad)
    except ValueError as exc:
        assert "does not name" in str(exc)
    else:
        raise AssertionError("a variant the split does not name was accepted")
