"""Segments on the local 3-master Redis Cluster: every segment index shares the `{ix}` slot, so the
SINTERSTORE / ZINTERSTORE / ZDIFFSTORE of an evaluation run there, while contacts sit in other slots."""

from tests.campaigns.test_segments import (  # noqa: F401 — collected here, with this directory's fixtures
    test_a_changed_value_leaves_its_old_entry,
    test_a_detected_language_does_not_override_a_chosen_one,
    test_each_filter_selects_exactly_the_contacts_it_names,
    test_merge_moves_and_erase_drops_every_entry,
    test_saved_segments_combine_and_refuse_what_is_missing,
)
