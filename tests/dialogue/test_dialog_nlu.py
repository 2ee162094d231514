"""Normalisation and stems: what makes Russian word forms and casing meet."""

from __future__ import annotations

from bot.dialogue.nlu import stems


def test_russian_word_forms_share_a_stem() -> None:
    assert stems("заказ") == stems("заказа") == stems("заказы") == stems("ЗАКАЗОВ") == ["заказ"]


def test_yo_punctuation_and_numbers_are_normalised_away() -> None:
    assert stems("Ещё, заказ №123!") == stems("еще заказ")


def test_english_stems_and_mixed_scripts() -> None:
    assert stems("Orders delivered") == ["order", "deliv"]
    assert stems("заказ orders") == ["заказ", "order"]
