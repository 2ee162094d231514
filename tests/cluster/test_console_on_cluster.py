"""The console's sessions, access checks and live updates, unchanged, against the local Redis Cluster."""

from tests.console.test_console_live import (  # noqa: F401 — collected here, with this directory's fixtures
    test_a_change_in_one_process_reaches_a_socket_of_another,
    test_a_socket_hears_only_what_its_agent_may_see,
)
from tests.console.test_console_security import (  # noqa: F401
    test_an_agent_cannot_open_another_teams_conversation,
    test_the_cookie_is_hardened_and_useless_after_logout,
    test_wrong_passwords_are_limited_and_the_sixth_try_is_refused,
)
