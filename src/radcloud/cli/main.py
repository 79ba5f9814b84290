"""The ``radcloud`` command: serve, import, export, verify, demo, and DICOM nodes.

Settings come from ``RADCLOUD_*`` environment variables (and ``RADCLOUD_CONFIG``);
``serve`` options override them.  Expected failures (bad input, a busy port,
an unreachable database) print one readable line and exit with status 1;
they never show a traceback.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from radcloud.archive import compression, demo, importer, integrity, nodes, retrieve
from radcloud.auth import accounts, audit
from radcloud.auth.access import DEFAULT_INSTITUTION
from radcloud.cli import admin
from radcloud.cli.common import (
    _archive,
    _fail,
    _progress,
    _reason,
    _settings,
    err,
    operator,
    out,
)  # fmt: skip
from radcloud.cli.keys import app as keys_app
from radcloud.cli.keys import decrypt_cmd, export_keyring
from radcloud.errors import RadcloudError
from radcloud.store.crypto import seal_bytes

app = typer.Typer(
    name="radcloud",
    help="radcloud: a DICOM archive with DICOMweb and DIMSE interfaces.",
    no_args_is_help=True,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ae_app = typer.Typer(help="DICOM nodes allowed to call us; with an address, C-MOVE destinations.",
                     no_args_is_help=True)  # fmt: skip
app.add_typer(ae_app, name="ae")
admin.register(app)
app.add_typer(keys_app, name="keys")
app.command("decrypt")(decrypt_cmd)

#: How many failure reasons ``import`` prints.
SHOW_REASONS = 10


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    """radcloud: a DICOM archive with DICOMweb and DIMSE interfaces."""
    if version:
        from radcloud import __version__

        print(f"radcloud {__version__}")
        raise typer.Exit(0)


def main() -> None:
    """Console-script entry point."""
    warnings.filterwarnings("ignore", module="pydicom")  # lenient reading is logged, not shouted
    app()


# ------------------------------------------------------------------ serve / demo


@app.command()
def serve(
    demo: Annotated[
        bool, typer.Option(help="Load the demo study if the archive is empty.")
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (blobs, SQLite).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
    dicom_port: Annotated[int | None, typer.Option(help="DICOM port; 0 disables DIMSE.")] = None,
    ae_title: Annotated[str | None, typer.Option(help="Our DICOM AE title.")] = None,
) -> None:
    """Run the archive: HTTP (DICOMweb, API) and DICOM listeners in one process."""
    from radcloud import server

    settings = _settings(
        data_dir=data_dir, http_port=http_port, dicom_port=dicom_port, ae_title=ae_title,
        demo=True if demo else None,
    )  # fmt: skip
    try:
        server.run(settings)
    except server.StartupError as exc:
        raise _fail(str(exc)) from None
    except RadcloudError as exc:  # e.g. an unusable encryption key file
        raise _fail(exc.detail) from None
    except SQLAlchemyError as exc:
        raise _fail(f"cannot open the index database: {_reason(exc)}") from None


@app.command("demo")
def demo_cmd() -> None:
    """Load the demo chest CT (synthetic, 120 slices) into the configured archive."""
    with _archive() as archive:
        if demo.has_demo(archive):
            out.print(f"The demo study (patient ID {demo.DEMO_PATIENT_ID}) is already loaded.")
            return
        with _progress() as bar:
            task = bar.add_task("demo chest CT", total=demo.DEMO_SLICES)
            n = demo.load_demo(archive, progress=lambda i: bar.update(task, completed=i))
    out.print(f"Loaded the demo chest CT: {n} slices, patient ID {demo.DEMO_PATIENT_ID}.")


# ------------------------------------------------------------------ import


@dataclass
class _Tally:
    stored: int = 0
    duplicate: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0


def _collect(paths: list[Path]) -> list[tuple[Path, bool]]:
    """(file, named on the command line) for every file to import; folders recursively."""
    items: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            items += [
                (f, False)
                for f in sorted(p for p in path.rglob("*") if p.is_file())
                if f.name.upper() != "DICOMDIR"  # a media index, not an image
            ]
        else:
            items.append((path, True))
    return items


@app.command("import")
def import_cmd(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files, folders, zip files.")],
    study: Annotated[
        str | None,
        typer.Option(help="Study Instance UID that JPEG/PNG photos and PDFs are attached to."),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Files imported in parallel.")] = 4,
    institution: Annotated[
        str | None, typer.Option(help="Institution (id or code) that owns new studies.")
    ] = None,
) -> None:
    """Import files, folders (recursively) and zip files; photos/PDFs into --study."""
    tally = _Tally()
    with _archive() as archive:
        who = operator(archive, institution)
        attrs = importer.study_attributes(archive, study.strip(), who) if study else None
        ctx = importer.Context(archive, "import", study.strip() if study else None, attrs, who)
        items = _collect(paths)
        with _progress() as bar, ThreadPoolExecutor(max(1, jobs)) as pool:
            task = bar.add_task("importing", total=len(items))
            for results in pool.map(lambda it: importer.store_copy(ctx, it[0], named=it[1]), items):
                for r in results:
                    _count(tally, r)
                bar.advance(task)
    _report_import(tally, tally.stored + tally.duplicate + len(tally.failed) + tally.skipped)
    if tally.failed:
        raise typer.Exit(1)


def _count(tally: _Tally, r: importer.FileResult) -> None:
    if r["status"] in ("stored", "replaced"):
        tally.stored += 1
    elif r["status"] == "duplicate":
        tally.duplicate += 1
    elif r["status"] == "skipped":
        tally.skipped += 1
    else:
        tally.failed.append((r["file"], r.get("detail") or r.get("reason", "")))


def _report_import(tally: _Tally, total: int) -> None:
    parts = [
        f"{tally.stored} stored",
        f"{tally.duplicate} duplicate",
        f"{len(tally.failed)} failed",
    ]
    if tally.skipped:
        parts.append(f"{tally.skipped} skipped (not DICOM)")
    out.print(f"Import finished, {total} file(s): " + ", ".join(parts))
    if tally.failed:
        err.print("[bold red]Failed:[/]")
        for label, reason in tally.failed[:SHOW_REASONS]:
            err.print(f"  {label}: {reason}")
        if len(tally.failed) > SHOW_REASONS:
            err.print(f"  … and {len(tally.failed) - SHOW_REASONS} more")


# ------------------------------------------------------------------ export / verify


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(file_okay=False, help="Folder to write into.")],
    study: Annotated[str, typer.Option(help="Study Instance UID.")],
    series: Annotated[str | None, typer.Option(help="Only this Series Instance UID.")] = None,
    encrypt: Annotated[
        bool,
        typer.Option(
            help="Encrypt the files (<uid>.dcm.enc) with the active key; "
            "'radcloud decrypt' turns them back."
        ),
    ] = False,
) -> None:
    """Write a study's (or one series') files, exactly as received, named <SOP Instance UID>.dcm."""
    failed: list[tuple[str, str]] = []
    with _archive() as archive:
        who = operator(archive)
        refs = retrieve.find_instances(
            archive, study.strip(), series.strip() if series else None, principal=who
        )
        audit.record(archive, who, "study.export", study_uid=study.strip(),
                     target=str(out_dir)[:255], detail={"instances": len(refs)})  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        ring = export_keyring(archive) if encrypt else None
        with _progress() as bar:
            task = bar.add_task("exporting", total=len(refs))
            for ref in refs:
                try:
                    data, name = retrieve.read_original(archive, ref), f"{ref.sop_uid}.dcm"
                    if ring is not None:  # the format of blobs at rest
                        data, name = seal_bytes(ring, data), name + ".enc"
                    _write_atomic(out_dir / name, data)
                except RadcloudError as exc:
                    failed.append((ref.sop_uid, exc.detail))
                bar.advance(task)
    out.print(f"Exported {len(refs) - len(failed)} of {len(refs)} instance(s) to {out_dir}")
    for uid, reason in failed[:SHOW_REASONS]:
        err.print(f"  [red]failed[/] {uid}: {reason}")
    if failed:
        raise typer.Exit(1)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@app.command()
def verify() -> None:
    """Re-hash every stored blob and check index rows against blobs, both ways."""
    with _archive() as archive:
        with _progress() as bar:
            task = bar.add_task("verifying", total=integrity.instance_count(archive))
            report = integrity.verify(archive, progress=lambda i: bar.update(task, completed=i))
    table = Table(title="Archive integrity")
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_row("instances in the index", str(report.instances))
    table.add_row("blobs re-hashed", str(report.blobs_checked))
    for kind, label in (("corrupt", "corrupt (SHA-256 mismatch)"),
                        ("missing", "index rows without their blob"),
                        ("orphan", "blobs without an index row")):  # fmt: skip
        n = report.count(kind)
        table.add_row(label, f"[red]{n}[/]" if n else "0")
    out.print(table)
    for p in report.problems[:SHOW_REASONS]:
        where = f"instance {p.sop_uid}" if p.sop_uid else "blob"
        err.print(f"  [red]{p.kind}[/] {where} ({p.blob_key}): {p.detail}")
    if not report.ok:
        err.print(f"[bold red]{len(report.problems)} problem(s) found.[/]")
        raise typer.Exit(1)
    out.print("[green]OK[/]: every index row has its blob with the recorded SHA-256.")


# ------------------------------------------------------------------ ae


@app.command()
def stats() -> None:
    """How much is stored: instances, bytes as received, bytes on disk, bytes saved."""
    with _archive() as archive:
        report = compression.savings(archive)
        counts = integrity.counts(archive)
    table = Table(show_header=False)
    for label, value in (
        ("patients / studies / series / instances", " / ".join(str(c) for c in counts)),
        ("bytes as received", f"{report['received_bytes']:,}"),
        ("bytes stored", f"{report['stored_bytes']:,}"),
        ("bytes saved by compression at rest", f"{report['saved_bytes']:,}"),
        ("instances compressed at rest", str(report["compressed_instances"])),
    ):
        table.add_row(label, value)
    out.print(table)


@ae_app.command("add")
def ae_add(
    title: Annotated[str, typer.Argument(help="The node's AE title.")],
    host: Annotated[str | None, typer.Option(help="Host name or IP (C-MOVE destination).")] = None,
    port: Annotated[int | None, typer.Option(help="DICOM port (with --host).")] = None,
    institution: Annotated[
        str | None, typer.Option(help="Institution id or code (default: the default one).")
    ] = None,
    store: Annotated[bool, typer.Option(help="May send us images (C-STORE).")] = True,
    query: Annotated[bool, typer.Option(help="May query and retrieve (C-FIND/MOVE/GET).")] = True,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Allow a DICOM node to call us (and, with --host/--port, to receive C-MOVEs)."""
    with _archive() as archive:
        inst = accounts.get_institution(archive, institution or DEFAULT_INSTITUTION)
        node, created = nodes.add_remote_ae(
            archive, title, host, port, description, institution_id=inst.id,
            allow_store=store, allow_query=query,
        )  # fmt: skip
        audit.record(archive, operator(archive), "ae.change", target=node.ae_title, wait=True)
    verb = "Added" if created else "Updated"
    where = f" at {node.host}:{node.port}" if node.host else " (no address: it calls us only)"
    out.print(f"{verb} DICOM node {node.ae_title}{where}, institution {inst.code}")


@ae_app.command("list")
def ae_list() -> None:
    """List the configured DICOM nodes."""
    with _archive() as archive:
        found = nodes.list_remote_aes(archive)
    if not found:
        out.print(
            "No DICOM nodes configured; unknown calling AEs are refused. Add one with: "
            "radcloud ae add TITLE [--host H --port P] [--institution CODE]"
        )
        return
    table = Table("AE title", "host", "port", "institution", "store", "query", "description")
    for n in found:
        table.add_row(
            n.ae_title, n.host or "-", str(n.port or "-"), str(n.institution_id),
            "yes" if n.allow_store else "no", "yes" if n.allow_query else "no", n.description,
        )  # fmt: skip
    out.print(table)


@ae_app.command("remove")
def ae_remove(title: Annotated[str, typer.Argument(help="The node's AE title.")]) -> None:
    """Remove a DICOM node."""
    with _archive() as archive:
        nodes.remove_remote_ae(archive, title)
    out.print(f"Removed DICOM node {title.strip()}")


if __name__ == "__main__":  # pragma: no cover
    main()
