"""``radcloud keys status|new|rotate`` and ``radcloud decrypt`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from pydicom import dcmread
from typer.testing import CliRunner, Result

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.cli.main import app
from radcloud.store.blobs import FileStorage
from radcloud.store.crypto import MAGIC
from radcloud.testing.phantom import tiny_ct_series


def cli(archive: Archive, *args: str, **env: str | None) -> Result:
    """Run ``radcloud ARGS`` on the same data folder and index as ``archive``."""
    base: dict[str, str | None] = {
        "RADCLOUD_DATA_DIR": str(archive.settings.data_dir),
        "RADCLOUD_DATABASE_URL": archive.settings.database_url,
        "RADCLOUD_CONFIG": None,
        "RADCLOUD_ENCRYPTION_KEYS": None,
        "RADCLOUD_KEY_FILE": None,
    }
    result = CliRunner().invoke(app, list(args), env={**base, **env})
    assert "Traceback" not in result.output, result.output
    return result


def _storage(archive: Archive) -> FileStorage:
    assert isinstance(archive.storage, FileStorage)
    return archive.storage


def _fill(archive: Archive, n: int = 3) -> list[ingest.StoreResult]:
    return [ingest.store_dataset(archive, ds) for ds in tiny_ct_series(n, patient_id="KEYS")]


def _row(output: str, first_cell: str) -> list[str]:
    """The cells of the status table row that starts with ``first_cell``."""
    rows = [re.split(r"\s*[│┃|]\s*", ln.strip(" │┃|")) for ln in output.splitlines()]
    return next(r for r in rows if r[0] == first_cell)


def test_status_new_rotate(archive: Archive) -> None:
    _fill(archive, 3)
    storage = _storage(archive)
    first = storage.keyring.active if storage.keyring else ""
    r = cli(archive, "keys", "status")
    assert r.exit_code == 0, r.output
    assert f"Active key: {first}" in r.stdout and "encryption at rest is on" in r.stdout
    assert _row(r.stdout, first)[:3] == [first, storage.keyring.fingerprint(first), "3"]  # type: ignore[union-attr]

    r = cli(archive, "keys", "new")
    assert r.exit_code == 0, r.output
    second = re.search(r"New active key (\S+) in", r.stdout).group(1)  # type: ignore[union-attr]
    key_file = archive.settings.data_dir / "keys" / "radcloud.keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    lines = [ln.split()[0] for ln in key_file.read_text().splitlines() if ln[:1].isalnum()]
    assert lines == [second, first]  # prepended: active first, the old key kept
    r = cli(archive, "keys", "status")
    assert f"Active key: {second}" in r.stdout
    assert _row(r.stdout, second)[2] == "0" and _row(r.stdout, first)[2] == "3"

    _fill(archive, 1)  # the running archive writes under the new key within seconds
    r = cli(archive, "keys", "rotate")
    assert r.exit_code == 0, r.output
    done = re.search(r"finished, 4 blob\(s\): (\d) re-wrapped, 0 encrypted, (\d) already", r.stdout)
    assert done is not None and int(done[1]) + int(done[2]) == 4, r.stdout
    assert int(done[1]) >= 3  # the 3 older blobs at least
    r = cli(archive, "keys", "rotate")  # re-running after an interruption is harmless
    assert "0 re-wrapped, 0 encrypted, 4 already current" in r.stdout
    r = cli(archive, "keys", "status")
    assert _row(r.stdout, second)[2] == "4" and _row(r.stdout, first)[2] == "0"
    assert {storage.key_id(k) for k in storage.keys()} == {second}
    # key changes are in the audit trail, as the operator's
    from radcloud.auth import audit
    from radcloud.auth.access import SYSTEM

    done_actions = [
        (e["action"], e["target"], e["actor_kind"]) for e in audit.search(archive, SYSTEM)
    ]
    assert ("keys.new", second, "cli") in done_actions
    assert done_actions.count(("keys.rotate", second, "cli")) == 2


def test_rotate_encrypts_legacy_plain_blobs(make_archive: object) -> None:
    plain = make_archive(encrypt_at_rest=False)  # type: ignore[operator]
    _fill(plain, 2)
    storage = _storage(plain)
    assert storage.keyring is None
    assert all(storage.key_id(k) is None for k in storage.keys())
    r = cli(plain, "keys", "status")
    assert r.exit_code == 1 and "no encryption keys" in r.stderr

    encrypted = make_archive()  # encryption on: creates the key file
    r = cli(encrypted, "keys", "status")
    assert r.exit_code == 0 and _row(r.stdout, "(not encrypted)")[-1] == "2"
    r = cli(encrypted, "keys", "rotate")
    assert r.exit_code == 0, r.output
    assert "0 re-wrapped, 2 encrypted" in r.stdout
    assert all(p.read_bytes()[:8] == MAGIC for p in encrypted.settings.blob_dir.rglob("*/*/*"))


def test_decrypt_a_copied_blob_folder_with_a_key_file(archive: Archive, tmp_path: Path) -> None:
    stored = _fill(archive, 2)
    key_file = archive.settings.data_dir / "keys" / "radcloud.keys"
    backup = tmp_path / "backup"  # e.g. a restored copy of the data folder's blobs
    for p in archive.settings.blob_dir.rglob("*/*/*"):
        (backup / p.name).parent.mkdir(parents=True, exist_ok=True)
        (backup / p.name).write_bytes(p.read_bytes())
    (backup / "notes.txt").write_text("not a blob")
    out = tmp_path / "out"
    other = {"RADCLOUD_DATA_DIR": str(tmp_path / "elsewhere")}  # no keys configured there
    r = cli(archive, "decrypt", str(backup), str(out), **other)
    assert r.exit_code == 1 and "no encryption keys" in r.stderr
    r = cli(archive, "decrypt", str(backup), str(out), "--key-file", str(key_file), **other)
    assert r.exit_code == 0, r.output
    assert "Decrypted 2 DICOM file(s)" in r.stdout and "1 non-DICOM file(s) skipped" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s.sop_uid}.dcm" for s in stored)
    ds = dcmread(out / f"{stored[0].sop_uid}.dcm")
    assert ds.PatientID == "KEYS" and ds.SOPInstanceUID == stored[0].sop_uid

    one = next(backup.glob("[0-9a-f]*"))
    r = cli(archive, "decrypt", str(one), str(tmp_path / "single"), "--key-file", str(key_file))
    assert r.exit_code == 0 and "Decrypted 1 DICOM file(s)" in r.stdout


def test_decrypt_with_the_wrong_key_fails_clearly(archive: Archive, tmp_path: Path) -> None:
    _fill(archive, 1)
    wrong = tmp_path / "wrong.keys"
    key_id = _storage(archive).keyring.active  # type: ignore[union-attr]
    wrong.write_text(f"{key_id} {base64.b64encode(os.urandom(32)).decode()}\n")
    r = cli(archive, "decrypt", str(archive.settings.blob_dir), str(tmp_path / "o"),
            "--key-file", str(wrong))  # fmt: skip
    assert r.exit_code == 1
    assert "not the key this blob was written with" in r.stderr
    assert "0 failed" not in r.stdout and not list((tmp_path / "o").glob("*.dcm"))


def test_keys_from_the_environment(archive: Archive) -> None:
    env = {"RADCLOUD_ENCRYPTION_KEYS": "envkey:" + base64.b64encode(os.urandom(32)).decode()}
    r = cli(archive, "keys", "new", **env)
    assert r.exit_code == 1 and "RADCLOUD_ENCRYPTION_KEYS" in r.stderr
    r = cli(archive, "keys", "status", **env)
    assert r.exit_code == 0 and "Active key: envkey" in r.stdout
    r = cli(archive, "keys", "status", RADCLOUD_ENCRYPTION_KEYS="bad")
    assert r.exit_code == 1 and "expected 'key-id:base64-key'" in r.stderr


def test_unusable_key_file_is_one_readable_line(archive: Archive, tmp_path: Path) -> None:
    bad = tmp_path / "bad.keys"
    bad.write_text("k1 nonsense!\n")
    r = cli(archive, "stats", RADCLOUD_KEY_FILE=str(bad))
    assert r.exit_code == 1
    assert r.stderr.strip() == f"error: {bad} line 1: the key is not valid base64"
