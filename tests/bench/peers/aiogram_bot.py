"""The bare aiogram 3 bot the benchmark measures the hub against: what a user writes in an afternoon.

    TELEGRAM_BOT_TOKEN=... TELEGRAM_WEBHOOK_SECRET=... \
        .venv/bin/python tests/bench/peers/aiogram_bot.py --port 8081 --api http://127.0.0.1:9090/emulator/telegram

Every text is answered with one greeting and a two-button inline keyboard. Webhook mode as aiogram's
own example has it (an aiohttp server, `SimpleRequestHandler` checking the secret-token header, the
update handled in the background after a 200); everything in memory, nothing durable. `--api` is the
Bot API base URL: the benchmark points it at the Telegram emulator.
"""

from __future__ import annotations

import argparse
import os

from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

WEBHOOK_PATH = "/webhooks/telegram"
GREETING = "Hello! I am the shop's bot. What would you like to know?"
KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[[
    InlineKeyboardButton(text="Opening hours", callback_data="hours"),
    InlineKeyboardButton(text="Delivery", callback_data="delivery"),
]])

router = Router()


@router.message(F.text)
async def greet(message: Message) -> None:
    await message.answer(GREETING, reply_markup=KEYBOARD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", required=True, help="the Bot API base URL (without /bot<token>)")
    args = parser.parse_args()
    secret = os.environ["TELEGRAM_WEBHOOK_SECRET"]
    bot = Bot(os.environ["TELEGRAM_BOT_TOKEN"], session=AiohttpSession(api=TelegramAPIServer.from_base(args.api)))
    dispatcher = Dispatcher()
    dispatcher.include_router(router)

    @dispatcher.startup()
    async def register_webhook() -> None:
        await bot.set_webhook(f"http://127.0.0.1:{args.port}{WEBHOOK_PATH}", secret_token=secret)

    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, secret_token=secret).register(app, path=WEBHOOK_PATH)
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
