"""The bare python-telegram-bot bot the benchmark measures the hub against: what a user writes in an afternoon.

    TELEGRAM_BOT_TOKEN=... TELEGRAM_WEBHOOK_SECRET=... \
        .venv/bin/python tests/bench/peers/ptb_bot.py --port 8082 --api http://127.0.0.1:9090/emulator/telegram

Every text is answered with one greeting and a two-button inline keyboard. Webhook mode as PTB ships
it: `Application.run_webhook` (its tornado server checks the secret-token header, queues the update
and answers 200; the application then handles it); everything in memory, nothing durable. `--api` is
the Bot API base URL: the benchmark points it at the Telegram emulator.

`concurrent_updates(True)`: by default PTB handles one update at a time, so the bot would wait for
each `sendMessage` before reading the next update — a bot under load is configured to overlap them.
"""

from __future__ import annotations

import argparse
import os

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters

WEBHOOK_PATH = "webhooks/telegram"
GREETING = "Hello! I am the shop's bot. What would you like to know?"
KEYBOARD = InlineKeyboardMarkup([[
    InlineKeyboardButton("Opening hours", callback_data="hours"),
    InlineKeyboardButton("Delivery", callback_data="delivery"),
]])


async def greet(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(GREETING, reply_markup=KEYBOARD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", required=True, help="the Bot API base URL (without /bot<token>)")
    args = parser.parse_args()
    application = (Application.builder().token(os.environ["TELEGRAM_BOT_TOKEN"])
                   .base_url(f"{args.api.rstrip('/')}/bot").concurrent_updates(True).build())
    application.add_handler(MessageHandler(filters.TEXT, greet))
    application.run_webhook(listen="127.0.0.1", port=args.port, url_path=WEBHOOK_PATH,
                            webhook_url=f"http://127.0.0.1:{args.port}/{WEBHOOK_PATH}",
                            secret_token=os.environ["TELEGRAM_WEBHOOK_SECRET"])


if __name__ == "__main__":
    main()
