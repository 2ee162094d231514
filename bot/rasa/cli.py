"""`omnihub rasa`: train a Rasa assistant on the hub's own dialogs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bot.cli_support import fail
from bot.dialogue.errors import DialogError
from bot.dialogue.loader import load_dialogs
from bot.rasa.export import export_project, languages, write_project
from bot.settings import ConfigError, load_settings

rasa = typer.Typer(help="Rasa: export the dialogs as a Rasa project.", no_args_is_help=True)


@rasa.command("export")
def export(
    out: Annotated[Path, typer.Option(help="the Rasa project directory to write (created if missing)")],
    language: Annotated[str, typer.Option(help="the dialogs' language to export, e.g. en or ru")] = "en",
    hub_url: Annotated[str, typer.Option(help="the hub as Rasa reaches it, for the action endpoint")] = (
        "http://127.0.0.1:8080"),
    token: Annotated[str | None, typer.Option(help="the action server's shared token")] = None,
) -> None:
    """Write a trainable Rasa 3.6 project (nlu, domain, rules, config, endpoints) from the dialogs."""
    try:
        dialogs = load_dialogs(load_settings().dialogs_dir)
    except (ConfigError, DialogError) as exc:
        raise fail(str(exc)) from None
    if language not in (known := languages(dialogs)):
        raise fail(f"unknown language {language!r}: the dialogs have {', '.join(known)}")
    if not hub_url.startswith(("http://", "https://")):
        raise fail(f"bad --hub-url {hub_url!r}: an http:// or https:// URL")
    project = export_project(dialogs, language, hub_url=hub_url, token=token)
    try:
        written = write_project(project, out)
    except OSError as exc:
        raise fail(f"cannot write the Rasa project to {out}: {exc.strerror or exc}") from None
    for note in project.notes:
        typer.echo(note, err=True)
    for path in written:
        typer.echo(f"wrote {path}")
