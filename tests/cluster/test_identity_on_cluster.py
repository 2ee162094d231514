"""Merge (by hand, by a shared phone, by a link code), fold, unmerge, erase and the journal's crash
recovery, unchanged, against the local Redis Cluster: contacts of different slots."""

from tests.api.test_contacts_api import (  # noqa: F401 — the tag index and unmerge through the API
    test_find_by_tag_pages_through_the_tag_index,
    test_unmerge_is_for_the_admin_and_gives_the_identities_back,
)
from tests.api.test_conversations_api import test_a_customer_who_asks_for_a_human_is_queued  # noqa: F401
from tests.api.test_links import (  # noqa: F401 — collected here, with this directory's fixtures
    test_a_code_from_telegram_links_whatsapp_and_the_flow_goes_on_there,
)
from tests.api.test_merge_and_erase import (  # noqa: F401
    test_a_message_and_a_receipt_sharing_an_entry_id_both_reach_the_survivor,
    test_erase_leaves_nothing_and_the_number_comes_back_as_a_stranger,
    test_two_contacts_merged_while_both_write_lose_nothing,
)
from tests.api.test_one_customer import (  # noqa: F401
    test_sharing_a_phone_that_whatsapp_already_knows_merges_the_two,
)
from tests.context.test_merge import (  # noqa: F401
    test_a_turn_that_lands_on_the_tombstone_is_folded_into_the_survivor,
    test_one_history_the_newest_dialog_and_attributes_of_the_more_recent_contact,
    test_refusals,
    test_unmerge_gives_back_identities_phone_and_tags_and_keeps_the_history,
)
from tests.context.test_merge_journal import (  # noqa: F401
    test_a_merge_cut_short_after_any_step_is_finished_by_the_sweeper,
    test_a_turn_committed_on_the_absorbed_contact_during_the_merge_is_folded,
)
from tests.context.test_privacy import test_erase_leaves_nothing_of_the_contact_and_what_it_absorbed  # noqa: F401
