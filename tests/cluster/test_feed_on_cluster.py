"""The CRM feed, unchanged, against the local Redis Cluster: every MULTI and script of the outbox,
the sender's acknowledgement and the delivery side touches one slot."""

from tests.crm.test_feed import (  # noqa: F401 — collected here, with this directory's fixtures
    test_a_failing_receiver_is_retried_after_its_retry_after_then_dead_lettered_and_redelivered,
    test_a_whole_conversation_reaches_the_crm_once_by_id_and_in_order,
)
