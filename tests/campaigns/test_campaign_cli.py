"""`omnihub campaign …` as a marketer runs it: a bad file is refused naming the file and the line; a
good one is launched against a running hub's Redis, watched to the end, and its figures printed."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns.test_campaigns import tagged
from tests.conftest import HubFactory
from tests.crm.test_cli import omnihub, omnihub_async, one_line_error
from tests.pipeline.customer import PARTITIONS, small_hub

GOOD = """name: CLI launch
purpose: service
audience:
  tags: [cli]
steps:
  - channel: preferred
    text: "Hello from the CLI, {{ contact.name }}"
    until: sent
    within: 1
"""


def test_a_bad_file_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps:\n  - channel: sms\n   text: oops\n")
    one_line_error(omnihub(None, "campaign", "preview", str(broken)), f"{broken}:4", "not valid YAML")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(GOOD.replace("until: sent", "until: never"))
    one_line_error(omnihub(None, "campaign", "run", str(wrong)), f"{wrong}:8", "steps.0.until")


async def test_run_launches_watches_and_prints_the_figures(hub: HubFactory, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "omnihub.yaml"
    config.write_text(f"pipeline: {{partitions: {PARTITIONS}}}\n")
    definition = tmp_path / "launch.yaml"
    definition.write_text(GOOD)
    async with small_hub(hub) as client:
        customer, _ = await tagged(client, "telegram", "760001", "cli")
        run = await omnihub_async(redis_url, "campaign", "run", str(definition), config=config)
        assert run.returncode == 0, run.stderr
        assert "running: 1 recipients" in run.stdout and "telegram" in run.stdout, run.stdout
        [message] = await customer.replies(1)
        assert message["text"] == "Hello from the CLI, Sandbox"
        campaign = run.stdout.split()[1]
        status = await omnihub_async(redis_url, "campaign", "status", campaign, config=config)
        assert status.returncode == 0 and "1 recipients" in status.stdout, status.stdout
