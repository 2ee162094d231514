"""The channel end-to-end tests and the crash test, unchanged, against the local Redis Cluster."""

from tests.pipeline.test_channels_e2e import (  # noqa: F401 — collected here, with this directory's fixtures
    test_a_late_status_never_downgrades_and_a_failure_is_final,
    test_sms_options_answered_by_title_with_segments_and_cost,
    test_telegram_inline_keyboard_and_a_pressed_button,
    test_viber_keyboard_and_read_receipts,
    test_whatsapp_numbered_options_answered_by_number,
)
from tests.pipeline.test_crash import test_sigkill_worker_mid_stream  # noqa: F401
