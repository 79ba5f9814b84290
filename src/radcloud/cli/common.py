"""Plumbing shared by the ``radcloud`` sub-commands: consoles, settings, the archive.

Expected failures (bad input, an unreachable database, a refused request)
print one readable line and exit with status 1; they never show a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from radcloud.archive.service import Archive
from radcloud.auth.access import DEFAULT_INSTITUTION, Principal
from radcloud.config import Settings, load_settings
from radcloud.errors import RadcloudError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _fail(f"invalid setting: {problems}") from None
    except OSError as exc:
        raise _fail(f"cannot read the configuration file: {exc}") from None


@contextmanager
def _archive(settings: Settings | None = None) -> Iterator[Archive]:
    """The configured archive; expected failures become one readable line and exit 1."""
    settings = settings or _settings()
    try:
        archive = Archive.open(settings)
    except SQLAlchemyError as exc:
        raise _fail(f"cannot open the index database: {_reason(exc)}") from None
    except OSError as exc:
        raise _fail(f"cannot use data folder {settings.data_dir}: {exc.strerror}") from None
    except RadcloudError as exc:  # e.g. an unusable encryption key file
        raise _fail(exc.detail) from None
    try:
        yield archive
    except RadcloudError as exc:
        raise _fail(exc.detail) from None
    except SQLAlchemyError as exc:
        raise _fail(f"index database error: {_reason(exc)}") from None
    finally:
        archive.close()


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).strip().splitlines()[0]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=False,
    )  # fmt: skip


def operator(archive: Archive, institution: str | int | None = None) -> Principal:
    """The person at the server's shell: unrestricted, audited as ``cli`` with their OS name.

    ``institution`` (id or code) owns the studies they import.
    """
    from radcloud.auth import accounts

    inst = accounts.get_institution(archive, institution).id if institution else None
    return accounts.cli_principal(inst or DEFAULT_INSTITUTION)
