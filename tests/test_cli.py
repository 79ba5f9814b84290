"""The ``radcloud`` command line: import, export, verify, ae (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _dimse_data import write_series
from typer.testing import CliRunner, Result

from radcloud.archive import retrieve
from radcloud.archive.query import Level, Query, search
from radcloud.archive.service import Archive
from radcloud.auth.access import SYSTEM
from radcloud.cli.main import app
from radcloud.store.blobs import FileStorage


def cli(archive: Archive, *args: str) -> Result:
    """Run ``radcloud ARGS`` against the same archive (data folder + index) as ``archive``."""
    env = {
        "RADCLOUD_DATA_DIR": str(archive.settings.data_dir),
        "RADCLOUD_DATABASE_URL": archive.settings.database_url,
        "RADCLOUD_CONFIG": None,
    }
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def _count(archive: Archive) -> int:
    return len(search(archive, Query(Level.IMAGE), principal=SYSTEM).items)


def test_import_folder_and_zip(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "cd"
    a = write_series(folder / "series1", 5, patient_id="IMP1")
    (folder / "README.txt").write_text("not an image")  # skipped inside a folder
    b = write_series(tmp_path / "zipped", 3, patient_id="IMP2")
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for p in b.paths:
            zf.write(p, f"study/{p.name}")
        zf.write(a.paths[0], "again.dcm")  # already imported from the folder

    r = cli(archive, "import", str(folder))
    assert r.exit_code == 0, r.output
    assert "5 stored, 0 duplicate, 0 failed, 1 skipped (not DICOM)" in r.stdout
    r = cli(archive, "import", str(bundle))
    assert r.exit_code == 0, r.output
    assert "4 file(s): 3 stored, 1 duplicate, 0 failed" in r.stdout
    assert _count(archive) == 8


def test_import_non_dicom_file_fails_clearly(archive: Archive, tmp_path: Path) -> None:
    good = write_series(tmp_path / "s", 1).paths[0]
    note = tmp_path / "notes.txt"
    note.write_text("hello, not DICOM\n" * 20)
    r = cli(archive, "import", str(note), str(good))
    assert r.exit_code == 1
    assert "1 stored, 0 duplicate, 1 failed" in r.stdout
    assert f"{note}: not a DICOM file" in r.stderr
    assert _count(archive) == 1


def test_console_script_reports_errors_without_traceback(archive: Archive, tmp_path: Path) -> None:
    note = tmp_path / "notes.txt"
    note.write_text("plain text")
    exe = Path(sys.executable).with_name("radcloud")
    env = {"RADCLOUD_DATA_DIR": str(archive.settings.data_dir), "PATH": "/usr/bin:/bin"}
    if archive.settings.database_url:
        env["RADCLOUD_DATABASE_URL"] = archive.settings.database_url
    r = subprocess.run([str(exe), "import", str(note)], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "not a DICOM file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([str(exe), "ae", "remove", "NOPE"], env=env, capture_output=True, text=True)
    assert (r.returncode, r.stderr.strip()) == (1, "error: no DICOM node with AE title 'NOPE'")


def test_export_round_trip(archive: Archive, tmp_path: Path) -> None:
    a = write_series(tmp_path / "a", 4, patient_id="EXP")
    b = write_series(tmp_path / "b", 2, patient_id="EXP", study_uid=a.study_uid, series_number=2)
    assert cli(archive, "import", str(tmp_path / "a"), str(tmp_path / "b")).exit_code == 0

    out = tmp_path / "out"
    r = cli(archive, "export", "--study", a.study_uid, str(out))
    assert r.exit_code == 0, r.output
    assert "Exported 6 of 6 instance(s)" in r.stdout
    for uid, path in zip(a.sop_uids + b.sop_uids, a.paths + b.paths, strict=True):
        assert (out / f"{uid}.dcm").read_bytes() == path.read_bytes()

    one = tmp_path / "one"
    r = cli(archive, "export", "--study", a.study_uid, "--series", b.series_uid, str(one))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in one.iterdir()) == sorted(f"{u}.dcm" for u in b.sop_uids)

    r = cli(archive, "export", "--study", "1.2.3.4", str(tmp_path / "none"))
    assert r.exit_code == 1 and "no such study" in r.stderr


def test_verify_detects_corrupt_missing_and_orphan_blobs(archive: Archive, tmp_path: Path) -> None:
    s = write_series(tmp_path / "v", 3, patient_id="VER")
    assert cli(archive, "import", str(tmp_path / "v")).exit_code == 0
    r = cli(archive, "verify")
    assert r.exit_code == 0, r.output
    assert "OK" in r.stdout

    storage = archive.storage
    assert isinstance(storage, FileStorage)
    refs = retrieve.find_instances(archive, s.study_uid, principal=SYSTEM)
    corrupt = storage.path(refs[0].blob_key)
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the pixel data
    corrupt.write_bytes(bytes(data))
    r = cli(archive, "verify")
    assert r.exit_code == 1
    assert f"corrupt instance {refs[0].sop_uid}" in r.stderr

    storage.path(refs[1].blob_key).unlink()
    storage.put_bytes("0" * 32, b"stray")  # a blob no index row names
    r = cli(archive, "verify")
    assert r.exit_code == 1
    assert f"missing instance {refs[1].sop_uid}" in r.stderr
    assert "orphan blob (" + "0" * 32 in r.stderr
    assert "3 problem(s) found" in r.stderr


def test_ae_add_list_remove(archive: Archive) -> None:
    r = cli(archive, "ae", "list")
    assert r.exit_code == 0 and "No DICOM nodes configured" in r.stdout
    r = cli(archive, "ae", "add", "WORKSTATION", "--host", "10.0.0.5", "--port", "104",
            "--description", "reading room 3")  # fmt: skip
    assert r.exit_code == 0 and "Added DICOM node WORKSTATION at 10.0.0.5:104" in r.stdout
    r = cli(archive, "ae", "add", "WORKSTATION", "--host", "10.0.0.6", "--port", "11112")
    assert r.exit_code == 0 and "Updated DICOM node WORKSTATION at 10.0.0.6:11112" in r.stdout
    r = cli(archive, "ae", "list")
    assert "WORKSTATION" in r.stdout and "10.0.0.6" in r.stdout and "11112" in r.stdout
    r = cli(archive, "ae", "add", "SEVENTEEN_CHARS_X", "--host", "h", "--port", "104")
    assert r.exit_code == 1 and "must be 1 to 16 characters" in r.stderr
    r = cli(archive, "ae", "add", "BADPORT", "--host", "h", "--port", "70000")
    assert r.exit_code == 1 and "between 1 and 65535" in r.stderr
    assert cli(archive, "ae", "remove", "WORKSTATION").exit_code == 0
    r = cli(archive, "ae", "remove", "WORKSTATION")
    assert r.exit_code == 1 and "no DICOM node with AE title 'WORKSTATION'" in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["ae", "--help"]])
def test_help(archive: Archive, args: list[str]) -> None:
    r = cli(archive, *args)
    assert r.exit_code == 0 and "Usage" in r.stdout


def test_version() -> None:
    from typer.testing import CliRunner

    from radcloud import __version__

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"radcloud {__version__}"
