"""``radcloud keys`` (status, new, rotate) and ``radcloud decrypt``: encryption at rest.

Rotation and key changes work while the server runs: a new key is prepended to
the key file (a running server notices the change), and ``rotate`` rewrites
each blob's header by atomic rename, so readers always see a whole file under
a key they hold.  ``decrypt`` turns encrypted blobs or exports back into
ordinary DICOM files, for restoring from a backup or handing data over.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from rich.table import Table

from radcloud.archive.service import Archive
from radcloud.cli.common import _fail, _progress, _settings, err, out
from radcloud.config import Settings
from radcloud.dicom.parse import looks_like_dicom
from radcloud.errors import InvalidDicom, KeyUnavailable, RadcloudError
from radcloud.store import crypto
from radcloud.store.blobs import FileStorage
from radcloud.store.crypto import Keyring

app = typer.Typer(
    help="Encryption keys for blobs at rest: status, new key, rotate blobs to the active key.",
    no_args_is_help=True,
)


#: How many failure reasons a command prints.
SHOW_REASONS = 10


def _keyring(settings: Settings, key_file: Path | None = None) -> Keyring:
    try:
        ring = Keyring.from_file(key_file) if key_file else Keyring.from_settings(settings)
    except RadcloudError as exc:
        raise _fail(exc.detail) from None
    if ring is None:
        where = crypto.default_key_file(settings)
        raise _fail(f"no encryption keys: {where} does not exist and "
                        "RADCLOUD_ENCRYPTION_KEYS is not set")  # fmt: skip
    return ring


def _storage(settings: Settings, keyring: Keyring) -> FileStorage:
    return FileStorage(
        settings.blob_dir, settings.tmp_dir, keyring=keyring, encrypt=settings.encrypt_at_rest
    )


@app.command()
def status() -> None:
    """The active key, every key id with its fingerprint, and how many blobs each one holds."""
    settings = _settings()
    ring = _keyring(settings)
    storage = _storage(settings, ring)
    under: Counter[str | None] = Counter()
    unreadable = 0
    for key in storage.keys():
        try:
            under[storage.key_id(key)] += 1
        except (OSError, RadcloudError):
            unreadable += 1  # vanished meanwhile, or a damaged header
    source = "RADCLOUD_ENCRYPTION_KEYS" if settings.encryption_keys else str(ring.source)
    out.print(f"Keys from: {source}")
    out.print(f"Active key: {ring.active}  (encryption at rest is "
                  f"{'on' if settings.encrypt_at_rest else 'off'})")  # fmt: skip
    table = Table("key id", "fingerprint", "blobs", "")
    for key_id in ring.ids:
        table.add_row(key_id, ring.fingerprint(key_id), str(under.pop(key_id, 0)),
                      "active" if key_id == ring.active else "")  # fmt: skip
    plain = under.pop(None, 0)
    for key_id, n in sorted((k, v) for k, v in under.items() if k is not None):
        table.add_row(key_id, "", f"[red]{n}[/]", "[red]not in the keyring[/]")
    table.add_row("(not encrypted)", "", str(plain), "")
    if unreadable:
        table.add_row("(unreadable header)", "", f"[red]{unreadable}[/]", "")
    out.print(table)
    stale = sum(n for k, n in under.items() if k is not None)
    if stale:
        err.print(f"[bold red]{stale} blob(s) are under keys the keyring does not hold.[/]")
        raise typer.Exit(1)


@app.command()
def new() -> None:
    """Generate a key and make it the active one (older keys stay, to read older blobs)."""
    settings = _settings()
    if settings.encryption_keys:
        raise _fail(
            "keys come from RADCLOUD_ENCRYPTION_KEYS; put a new 'id:base64' entry first "
            "there (e.g. from: openssl rand -base64 32)"
        )
    path = crypto.default_key_file(settings)
    try:
        key_id = crypto.add_key(path)
    except RadcloudError as exc:
        raise _fail(exc.detail) from None
    except OSError as exc:
        raise _fail(f"cannot write key file {path}: {exc.strerror}") from None
    _audit(settings, "keys.new", key_id)
    out.print(f"New active key {key_id} in {path}.")
    out.print(
        "New blobs are encrypted with it from now on (a running server picks it up within "
        "seconds). Back the key file up, then run 'radcloud keys rotate' to move older "
        "blobs to it."
    )


@app.command()
def rotate(
    encrypt_plain: Annotated[
        bool,
        typer.Option(help="Also encrypt blobs written before encryption was turned on."),
    ] = True,
) -> None:
    """Re-wrap every blob's data key under the active key; safe to interrupt and run again.

    Only each blob's header changes; the server may keep running.
    """
    settings = _settings()
    ring = _keyring(settings)
    storage = _storage(settings, ring)
    keys = list(storage.keys())
    tally: Counter[str] = Counter()
    failed: list[tuple[str, str]] = []
    with _progress() as bar:
        task = bar.add_task(f"rotating to {ring.active}", total=len(keys))
        for key in keys:
            try:
                tally[storage.rewrap(key, encrypt_plain=encrypt_plain)] += 1
            except RadcloudError as exc:
                failed.append((key, exc.detail))
            bar.advance(task)
    out.print(
        f"Rotation to key {ring.active} finished, {len(keys)} blob(s): "
        f"{tally['rewrapped']} re-wrapped, {tally['encrypted']} encrypted, "
        f"{tally['current']} already current, {tally['plain']} left plain, "
        f"{tally['missing']} gone meanwhile, {len(failed)} failed"
    )
    for key, reason in failed[:SHOW_REASONS]:
        err.print(f"  [red]failed[/] blob {key}: {reason}")
    _audit(settings, "keys.rotate", ring.active, {"blobs": len(keys), "failed": len(failed)})
    if failed:
        raise typer.Exit(1)


def _audit(settings: Settings, action: str, target: str, detail: dict[str, int] | None = None
           ) -> None:  # fmt: skip
    """Key changes go into the audit trail, as done by the operator at the shell."""
    from radcloud.auth import audit
    from radcloud.cli.common import _archive, operator

    with _archive(settings) as archive:
        audit.record(archive, operator(archive), action, target=target, detail=detail, wait=True)


# ------------------------------------------------------------------ decrypt


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(
        p
        for p in src.rglob("*")
        if p.is_file() and not p.name.endswith((".part", ".tmp")) and p.name != "radcloud.keys"
    )


def _sop_uid(path: Path) -> str | None:
    """The SOP Instance UID if ``path`` holds a DICOM object, else None."""
    with open(path, "rb") as fh:
        if not looks_like_dicom(fh.read(132)):
            return None
    try:
        ds = dcmread(path, stop_before_pixels=True, force=True, specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    uid = str(ds.get("SOPInstanceUID", "") or "").strip()
    return uid or None


def _as_part10(path: Path) -> None:
    """Rewrite a bare data set (no preamble and meta header) as a Part 10 file, in place."""
    with open(path, "rb") as fh:
        if fh.read(132)[128:132] == b"DICM":
            return
    try:
        ds = dcmread(path, force=True)
        ds.save_as(path, enforce_file_format=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds here
        raise InvalidDicom(f"cannot write it as a DICOM Part 10 file: {exc}") from None


def decrypt_cmd(
    src: Annotated[
        Path, typer.Argument(exists=True, help="An encrypted blob or export, or a folder of them.")
    ],
    dest: Annotated[Path, typer.Argument(file_okay=False, help="Folder to write DICOM files to.")],
    key_file: Annotated[
        Path | None,
        typer.Option(help="Key file to decrypt with (default: the configured keys)."),
    ] = None,
) -> None:
    """Decrypt blobs (a copy of the data folder's blobs/, or an encrypted export) to DICOM files.

    Writes standard DICOM Part 10 files named <SOP Instance UID>.dcm and skips thumbnails
    and other non-DICOM blobs; plain (unencrypted) DICOM files are copied too.
    """
    ring = _keyring(_settings(), key_file)
    files = _sources(src)
    dest.mkdir(parents=True, exist_ok=True)
    tally: Counter[str] = Counter()
    failed: list[tuple[Path, str]] = []
    with _progress() as bar:
        task = bar.add_task("decrypting", total=len(files))
        for path in files:
            try:
                tally[_decrypt_one(path, dest, ring)] += 1
            except RadcloudError as exc:
                failed.append((path, exc.detail))
            except OSError as exc:
                failed.append((path, f"cannot read or write: {exc.strerror or exc}"))
            bar.advance(task)
    out.print(
        f"Decrypted {tally['decrypted']} DICOM file(s) into {dest}; "
        f"{tally['plain']} unencrypted DICOM file(s) copied, "
        f"{tally['skipped']} non-DICOM file(s) skipped, {len(failed)} failed"
    )
    for path, reason in failed[:SHOW_REASONS]:
        err.print(f"  [red]failed[/] {path}: {reason}")
    if failed:
        raise typer.Exit(1)


def _decrypt_one(path: Path, dest: Path, ring: Keyring) -> str:
    """Decrypt (or copy) one file into ``dest``; returns decrypted / plain / skipped."""
    tmp = dest / f".decrypt-{uuid.uuid4().hex}.part"
    try:
        with crypto.open_file(path, ring, str(path)) as inp, open(tmp, "xb") as out:
            encrypted = isinstance(inp, crypto.DecryptingReader)
            while block := inp.read(4 * 1024 * 1024):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        uid = _sop_uid(tmp)
        if uid is None or "/" in uid or uid.startswith("."):
            return "skipped"
        _as_part10(tmp)
        os.replace(tmp, dest / f"{uid}.dcm")
        return "decrypted" if encrypted else "plain"
    finally:
        tmp.unlink(missing_ok=True)


def export_keyring(archive: Archive) -> Keyring:
    """The keys ``radcloud export --encrypt`` seals with: the archive's own keyring."""
    ring = archive.storage.keyring if isinstance(archive.storage, FileStorage) else None
    if ring is None:
        raise KeyUnavailable(
            "no encryption keys are configured (turn on encrypt_at_rest or set a key file)"
        )
    return ring
