"""DIMSE enforces accounts: calling AEs, their institution and their rights, with DCMTK peers.

Two institutions: A (the default, id 1) and B.  Known nodes: A_MOD (A), B_MOD (B),
A_VIEW (A, may not store) and A_STORE_ONLY (A, may not query or retrieve).  One
study belongs to A, one to B (a distinctive patient).  Every DCMTK tool runs against
a real listener; each test also checks the audit trail and that its hash chain holds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _dimse_data import DCMTK_ENV, dcmtk, free_port, wait_port, write_series
from dicom_factory import make_ct
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import select

from radcloud.archive import ingest, nodes, query, retrieve
from radcloud.archive.query import Level, Query
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit
from radcloud.auth.access import SYSTEM, Principal
from radcloud.dimse.scp import CALLERS_TTL, DimseServer
from radcloud.errors import NotFound
from radcloud.store.models import Instance, Study

pytestmark = pytest.mark.dcmtk

A_PATIENT, A_NAME = "AOWN01", "Own^Alice"
B_PATIENT, B_NAME = "BSECRET77", "Secret^Bob"
#: What DCMTK prints for status 0x0124 (3.6.7 knows no name for it; later versions do).
REFUSED = ("0x124", "0x0124", "Not Authorized", "NotAuthorized")


@dataclass
class Study3:
    study: str
    series: str
    sops: list[str]


@dataclass
class World:
    archive: Archive
    b_id: int
    a: Study3
    b: Study3


def _store(archive: Archive, institution: int, patient_id: str, name: str, n: int = 2) -> Study3:
    study, series = generate_uid(), generate_uid()
    sops = []
    for i in range(n):
        r = ingest.store_bytes(
            archive,
            make_ct(study, series, patient_id=patient_id, patient_name=name, instance_number=i + 1),
            principal=accounts.cli_principal(institution),
        )
        sops.append(r.sop_uid)
    return Study3(study, series, sops)


@pytest.fixture
def world(archive: Archive) -> World:
    b_id = accounts.create_institution(archive, "hospital-b", "Hospital B").id
    nodes.add_remote_ae(archive, "A_MOD", institution_id=1)
    nodes.add_remote_ae(archive, "B_MOD", institution_id=b_id)
    nodes.add_remote_ae(archive, "A_VIEW", institution_id=1, allow_store=False)
    nodes.add_remote_ae(archive, "A_STORE_ONLY", institution_id=1, allow_query=False)
    a = _store(archive, 1, A_PATIENT, A_NAME)
    b = _store(archive, b_id, B_PATIENT, B_NAME)
    return World(archive, b_id, a, b)


@pytest.fixture
def scp(archive: Archive, world: World) -> Iterator[DimseServer]:
    server = DimseServer(archive, host="127.0.0.1", port=0).start()
    yield server
    server.stop(grace=0)


# ------------------------------------------------------------------ helpers


def _tool(scp: DimseServer, tool: str, aet: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK SCU verbosely as calling AE ``aet`` against the listener."""
    return dcmtk(tool, "-v", "-aet", aet, "-aec", scp.ae_title, *args, "127.0.0.1", str(scp.port))


def _storescu(scp: DimseServer, aet: str, *files: Path) -> subprocess.CompletedProcess[str]:
    peer = ("-aet", aet, "-aec", scp.ae_title, "127.0.0.1", str(scp.port))
    return dcmtk("storescu", "-v", *peer, *map(str, files))


_RUN = iter(range(10_000))


def _find(
    scp: DimseServer, tmp_path: Path, aet: str, model: str, *keys: str
) -> tuple[list[Dataset], subprocess.CompletedProcess[str]]:
    """findscu as ``aet``: the response identifiers (extracted with -X) and the run."""
    out = tmp_path / f"find{next(_RUN)}"
    out.mkdir()
    args = [model, "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    r = _tool(scp, "findscu", aet, *args)
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))], r


def _refused(r: subprocess.CompletedProcess[str]) -> bool:
    return any(s in r.stderr for s in REFUSED)


def _owner(archive: Archive, study_uid: str) -> int | None:
    with archive.read() as conn:
        return conn.scalar(select(Study.institution_fk).where(Study.study_uid == study_uid))


def _sop_stored(archive: Archive, sop_uid: str) -> bool:
    with archive.read() as conn:
        return conn.scalar(select(Instance.id).where(Instance.sop_uid == sop_uid)) is not None


def _instances(archive: Archive, study_uid: str) -> list[str]:
    try:
        return [r.sop_uid for r in retrieve.find_instances(archive, study_uid, principal=SYSTEM)]
    except NotFound:
        return []


def _sees(archive: Archive, who: Principal, study_uid: str) -> bool:
    q = Query(Level.STUDY, {"StudyInstanceUID": study_uid})
    return bool(query.search(archive, q, principal=who).items)


def _events(archive: Archive, **kw: Any) -> list[dict[str, Any]]:
    return audit.search(archive, SYSTEM, limit=1000, **kw)


def _wait_events(archive: Archive, n: int, timeout: float = 10, **kw: str) -> list[dict[str, Any]]:
    """Events written by listener threads may land a moment after the peer has exited."""
    deadline = time.monotonic() + timeout
    while True:
        found = _events(archive, **kw)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _chain_intact(archive: Archive) -> None:
    report = audit.verify(archive)
    assert report.ok, report.problems
    assert report.checked > 0


def _ct_file(folder: Path, name: str, study: str, series: str, sop: str | None = None,
             patient_id: str = "BATTACK", patient_name: str = "Attack^Bee") -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(
        make_ct(study, series, sop_uid=sop or generate_uid(), patient_id=patient_id,
                patient_name=patient_name)
    )  # fmt: skip
    return path


# ------------------------------------------------------------------ association


def test_unknown_calling_ae_is_rejected_until_an_institution_accepts_it(
    scp: DimseServer, world: World, tmp_path: Path
) -> None:
    archive = world.archive
    assert _tool(scp, "echoscu", "A_MOD").returncode == 0  # a known AE gets in

    echo = _tool(scp, "echoscu", "NOBODY")
    assert echo.returncode != 0
    assert "Association Rejected" in echo.stderr, echo.stderr
    assert "Calling AE Title Not Recognized" in echo.stderr, echo.stderr

    series = write_series(tmp_path / "unknown", 2, patient_id="UNKN01", patient_name="Un^Known")
    store = _storescu(scp, "NOBODY", *series.paths)
    assert store.returncode != 0
    assert "Association Rejected" in store.stderr, store.stderr
    assert "Calling AE Title Not Recognized" in store.stderr
    assert _owner(archive, series.study_uid) is None
    assert not any(_sop_stored(archive, uid) for uid in series.sop_uids)

    denied = _wait_events(archive, 2, action="dimse.associate", result=audit.DENIED)
    assert [e["actor"] for e in denied] == ["NOBODY", "NOBODY"]
    assert all(e["source"] == "127.0.0.1" for e in denied)
    assert all(e["detail"] == {"reason": "calling AE title not recognized"} for e in denied)

    # institution B takes in unknown callers: within the listener's cache time they get in
    accounts.set_institution(archive, world.b_id, accept_unknown_aes=True)
    t0 = time.monotonic()
    while _tool(scp, "echoscu", "NOBODY").returncode != 0:
        assert time.monotonic() - t0 < CALLERS_TTL + 1.5, "unknown AE still rejected"
        time.sleep(0.2)
    store = _storescu(scp, "NOBODY", *series.paths)
    assert store.returncode == 0, store.stderr
    assert _owner(archive, series.study_uid) == world.b_id  # what it stores is B's
    assert _sees(archive, accounts.principal_for_ae(archive, "B_MOD"), series.study_uid)
    assert not _sees(archive, accounts.principal_for_ae(archive, "A_MOD"), series.study_uid)
    assert sorted(_instances(archive, series.study_uid)) == sorted(series.sop_uids)
    stored = _wait_events(archive, 1, action="study.store", actor="NOBODY")
    assert stored and stored[0]["institution_id"] == world.b_id

    # and the door closes again
    accounts.set_institution(archive, world.b_id, accept_unknown_aes=False)
    t0 = time.monotonic()
    while _tool(scp, "echoscu", "NOBODY").returncode == 0:
        assert time.monotonic() - t0 < CALLERS_TTL + 1.5, "unknown AE still accepted"
        time.sleep(0.2)
    _chain_intact(archive)


# ------------------------------------------------------------------ C-STORE and C-FIND


def test_what_b_stores_belongs_to_b_and_only_b_finds_it(
    scp: DimseServer, world: World, tmp_path: Path
) -> None:
    archive = world.archive
    new = write_series(tmp_path / "b-new", 3, patient_id="BNEW42", patient_name="Hidden^Carol")
    r = _storescu(scp, "B_MOD", *new.paths)
    assert r.returncode == 0, r.stderr
    assert _owner(archive, new.study_uid) == world.b_id

    study_keys = ("QueryRetrieveLevel=STUDY", "PatientID=*", "StudyInstanceUID", "PatientName")
    a_found, r = _find(scp, tmp_path, "A_MOD", "-S", *study_keys)
    assert r.returncode == 0, r.stderr
    assert {d.StudyInstanceUID for d in a_found} == {world.a.study}
    assert {d.PatientID for d in a_found} == {A_PATIENT}
    b_found, _ = _find(scp, tmp_path, "B_MOD", "-S", *study_keys)
    assert {d.StudyInstanceUID for d in b_found} == {world.b.study, new.study_uid}

    patient_keys = ("QueryRetrieveLevel=PATIENT", "PatientID=*", "PatientName")
    a_patients, r = _find(scp, tmp_path, "A_MOD", "-P", *patient_keys)
    assert r.returncode == 0, r.stderr
    assert [(p.PatientID, str(p.PatientName)) for p in a_patients] == [(A_PATIENT, A_NAME)]
    b_patients, _ = _find(scp, tmp_path, "B_MOD", "-P", *patient_keys)
    assert {p.PatientID for p in b_patients} == {B_PATIENT, "BNEW42"}

    # asking for B's objects by their keys finds nothing either, at any level
    for model, keys in (
        ("-S", ("QueryRetrieveLevel=STUDY", f"PatientID={B_PATIENT}", "StudyInstanceUID")),
        ("-S", ("QueryRetrieveLevel=STUDY", "PatientName=Secret*", "StudyInstanceUID")),
        ("-S", ("QueryRetrieveLevel=SERIES", f"StudyInstanceUID={new.study_uid}",
                "SeriesInstanceUID")),
        ("-S", ("QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={world.b.study}",
                f"SeriesInstanceUID={world.b.series}", "SOPInstanceUID")),
        ("-P", ("QueryRetrieveLevel=PATIENT", "PatientID=BNEW42", "PatientName")),
        ("-P", ("QueryRetrieveLevel=STUDY", f"PatientID={B_PATIENT}", "StudyInstanceUID")),
    ):  # fmt: skip
        found, r = _find(scp, tmp_path, "A_MOD", model, *keys)
        assert found == [], (keys, found)
        assert r.returncode == 0 and "Success" in r.stderr, r.stderr
        assert "Pending" not in r.stderr  # no match was sent at all

    searches = _wait_events(archive, 8, action="study.search", actor="A_MOD")
    assert len(searches) >= 8 and all(e["result"] == audit.SUCCESS for e in searches)
    assert _wait_events(archive, 1, action="study.store", actor="B_MOD")
    _chain_intact(archive)


def test_b_cannot_add_instances_to_a_study(scp: DimseServer, world: World, tmp_path: Path) -> None:
    """Same study UID; a new study UID reusing A's series UID; A's SOP Instance UID again."""
    archive = world.archive
    before = sorted(_instances(archive, world.a.study))
    folder = tmp_path / "attack"
    fresh_study, fresh_series = generate_uid(), generate_uid()
    attacks = {
        "same study": _ct_file(folder, "1.dcm", world.a.study, generate_uid()),
        "same series": _ct_file(folder, "2.dcm", fresh_study, world.a.series),
        "same instance": _ct_file(folder, "3.dcm", generate_uid(), fresh_series, world.a.sops[0]),
    }
    for what, path in attacks.items():
        sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        r = _storescu(scp, "B_MOD", path)
        assert r.returncode != 0, f"{what}: {r.stderr}"
        assert _refused(r), f"{what}: {r.stderr}"
        if what != "same instance":
            assert not _sop_stored(archive, sop), what
    assert sorted(_instances(archive, world.a.study)) == before
    assert _owner(archive, fresh_study) is None
    assert _instances(archive, fresh_study) == []
    refs = retrieve.find_instances(archive, world.a.study, principal=SYSTEM)
    assert [(r.series_uid, r.sop_uid) for r in refs] == [(world.a.series, u) for u in world.a.sops]

    deadline = time.monotonic() + 10
    while True:  # repeats within one write batch are folded into one row with a count
        denied = _events(archive, action="study.store", actor="B_MOD", result=audit.DENIED)
        if sum(int(e["count"]) for e in denied) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sum(int(e["count"]) for e in denied) == 3
    # and B's own new study is fine (the refusals were about A's objects, not B's rights)
    ok = _ct_file(folder, "4.dcm", generate_uid(), generate_uid())
    assert _storescu(scp, "B_MOD", ok).returncode == 0
    _chain_intact(archive)


def test_store_and_query_rights_of_each_node(
    scp: DimseServer, world: World, tmp_path: Path
) -> None:
    archive = world.archive
    view = write_series(tmp_path / "view", 1, patient_id="AVIEW1")
    r = _storescu(scp, "A_VIEW", *view.paths)
    assert r.returncode != 0 and _refused(r), r.stderr
    assert _owner(archive, view.study_uid) is None and not _sop_stored(archive, view.sop_uids[0])
    found, r = _find(scp, tmp_path, "A_VIEW", "-S", "QueryRetrieveLevel=STUDY", "PatientID=*",
                     "StudyInstanceUID")  # fmt: skip
    assert {d.StudyInstanceUID for d in found} == {world.a.study}

    found, r = _find(scp, tmp_path, "A_STORE_ONLY", "-S", "QueryRetrieveLevel=STUDY",
                     "PatientID=*", "StudyInstanceUID")  # fmt: skip
    assert found == []
    assert "Final Find Response" in r.stderr and _refused(r), r.stderr
    got = tmp_path / "got-store-only"
    got.mkdir()
    study = ("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={world.a.study}")
    r = _tool(scp, "getscu", "A_STORE_ONLY", "-S", "-od", str(got), *study)
    assert _refused(r), r.stderr
    assert list(got.iterdir()) == []
    store_only = write_series(tmp_path / "store-only", 2, patient_id="ASTORE1")
    assert _storescu(scp, "A_STORE_ONLY", *store_only.paths).returncode == 0
    assert _owner(archive, store_only.study_uid) == 1

    assert _wait_events(archive, 1, action="study.store", actor="A_VIEW", result=audit.DENIED)
    assert _wait_events(
        archive, 1, action="study.search", actor="A_STORE_ONLY", result=audit.DENIED
    )
    assert _wait_events(archive, 1, action="study.get", actor="A_STORE_ONLY", result=audit.DENIED)
    _chain_intact(archive)


# ------------------------------------------------------------------ C-MOVE and C-GET


@pytest.fixture
def storescp(archive: Archive, world: World, tmp_path: Path) -> Iterator[Path]:
    """A real storescp, registered as the C-MOVE destination DEST (of institution A)."""
    folder = tmp_path / "dest"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "--output-directory", str(folder), "-aet", "DEST", str(port)],
        env=DCMTK_ENV, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port)
    nodes.add_remote_ae(archive, "DEST", "127.0.0.1", port, institution_id=1)
    yield folder
    proc.terminate()
    proc.wait(10)


def _received(folder: Path) -> set[str]:
    return {
        str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in folder.iterdir()
        if p.is_file()
    }


def test_move_and_get_reach_only_the_callers_studies(
    scp: DimseServer, world: World, storescp: Path, tmp_path: Path
) -> None:
    archive = world.archive
    b = world.b
    identifiers: dict[str, list[tuple[str, ...]]] = {
        "-S": [
            ("QueryRetrieveLevel=STUDY", f"StudyInstanceUID={b.study}"),
            ("QueryRetrieveLevel=SERIES", f"StudyInstanceUID={b.study}",
             f"SeriesInstanceUID={b.series}"),
            ("QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={b.study}",
             f"SeriesInstanceUID={b.series}", f"SOPInstanceUID={b.sops[0]}"),
        ],
        "-P": [("QueryRetrieveLevel=PATIENT", f"PatientID={B_PATIENT}")],
    }  # fmt: skip
    for model, idents in identifiers.items():
        for keys in idents:
            k_args = [a for k in keys for a in ("-k", k)]
            r = _tool(scp, "movescu", "A_MOD", model, "-aem", "DEST", *k_args)
            assert "Received Final Move Response" in r.stderr, r.stderr  # it did run
            assert "Pending" not in r.stderr, r.stderr  # ... and sent nothing
            assert _received(storescp) == set(), keys
            got = tmp_path / f"get{next(_RUN)}"
            got.mkdir()
            r = _tool(scp, "getscu", "A_MOD", model, "-od", str(got), *k_args)
            assert "Number of Completed Suboperations : 0" in r.stderr or _refused(r), r.stderr
            assert list(got.iterdir()) == [], keys

    # a list of study UIDs naming both: A's instances only
    both = f"StudyInstanceUID={world.a.study}\\{b.study}"
    r = _tool(scp, "movescu", "A_MOD", "-S", "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY",
              "-k", both)  # fmt: skip
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr
    assert _received(storescp) == set(world.a.sops)
    got = tmp_path / "get-own"
    got.mkdir()
    r = _tool(scp, "getscu", "A_MOD", "-S", "-od", str(got), "-k", "QueryRetrieveLevel=STUDY",
              "-k", f"StudyInstanceUID={world.a.study}")  # fmt: skip
    assert "Number of Completed Suboperations : 2" in r.stderr, r.stderr
    assert _received(got) == set(world.a.sops)

    # B retrieving its own study works (the refusals above were about whose study it is)
    r = _tool(scp, "movescu", "B_MOD", "-S", "-aem", "DEST", "-k", "QueryRetrieveLevel=STUDY",
              "-k", f"StudyInstanceUID={b.study}")  # fmt: skip
    assert "Received Final Move Response (Success)" in r.stderr, r.stderr
    assert _received(storescp) == set(world.a.sops) | set(b.sops)

    for action in ("study.move", "study.get"):
        own = _wait_events(archive, 1, action=action, actor="A_MOD", study_uid=world.a.study)
        assert own and own[0]["result"] == audit.SUCCESS
        assert own[0]["detail"]["instances"] == 2
        leaked = [e for e in _events(archive, action=action, study_uid=b.study)
                  if e["actor"] == "A_MOD"]  # fmt: skip
        assert leaked == []
    assert _wait_events(archive, 1, action="study.move", actor="B_MOD", study_uid=b.study)
    _chain_intact(archive)
