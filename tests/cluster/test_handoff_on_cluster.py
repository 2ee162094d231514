"""Agents, the capacity reservation and the router, unchanged, against the local Redis Cluster."""

from tests.handoff.test_agents import (  # noqa: F401 — collected here, with this directory's fixtures
    test_capacity_holds_under_fifty_concurrent_claims,
    test_create_get_and_duplicate_email,
    test_presence_is_a_recent_heartbeat,
    test_verify_password_and_disable,
)
from tests.handoff.test_router import (  # noqa: F401
    test_a_reply_clock_started_by_the_customer,
    test_an_agent_who_leaves_gives_the_chats_back,
    test_first_response_sla_breach_is_recorded_and_rerouted,
    test_least_loaded_online_agents_in_turn,
    test_one_router_at_a_time,
    test_queue_timeout_escalates,
    test_two_agents_claim_one_conversation,
)
