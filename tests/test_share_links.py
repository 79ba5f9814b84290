"""Share links: creating, opening with the identity check, limits, refusals, de-identification.

The patient's side is driven over HTTP without an account (token + share
session cookie), the manager's side with a radiologist's bearer token.  The
de-identification test walks every attribute of every DICOM file served
through a share (the pattern of tests/test_deid.py).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydicom import dcmread
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from sqlalchemy import select, update
from test_deid import IDENTIFYING, leaks, patient_ct

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts, audit, sessions
from radcloud.share import links
from radcloud.share.models import Share
from radcloud.store.models import AuditEvent
from radcloud.web.app import create_app

PHONE_LAST4 = "2114"  # test_deid.PHONE = "+86-28-8542-2114"
PROBLEM = {"type", "title", "status", "detail"}


@dataclass
class World:
    archive: Archive
    client: TestClient
    study: str
    staff: dict[str, str]  # Authorization header of a radiologist of the owning hospital
    stranger: dict[str, str]  # ... of another hospital


def _bearer(archive: Archive, user: int) -> dict[str, str]:
    return {"Authorization": "Bearer " + sessions.issue(archive, user, sessions.API)}


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    links.FAILURES.reset()
    yield
    links.FAILURES.reset()


@pytest.fixture
def world(archive: Archive) -> World:
    for n in range(3):
        ingest.store_dataset(
            archive, patient_ct(n + 1, sop=generate_uid()), principal=accounts.cli_principal(1)
        )
    other = accounts.create_institution(archive, "other-hosp", "Other Hospital").id
    rad = accounts.create_user(archive, "rad.share", "share-pass-12", roles=["radiologist"])
    far = accounts.create_user(
        archive, "far.share", "share-pass-12", roles=["radiologist"], institution_id=other
    )
    return World(
        archive, TestClient(create_app(archive)), str(patient_ct().StudyInstanceUID),
        _bearer(archive, rad), _bearer(archive, far),
    )  # fmt: skip


def _create(w: World, **body: Any) -> dict[str, Any]:
    r = w.client.post(f"/api/studies/{w.study}/shares", json=body, headers=w.staff)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _verify(w: World, token: str, answer: str | None) -> Any:
    w.client.cookies.clear()
    return w.client.post("/api/s/verify", json={"token": token, "answer": answer})


def _problem(r: Any, status: int) -> dict[str, Any]:
    """A refusal: the status, a problem+json body with a clear detail, and nothing else."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert set(body) == PROBLEM and body["detail"]
    assert not [t for t in IDENTIFYING if t.lower() in r.text.lower()]
    return body


# ------------------------------------------------------------------ the happy path


def test_a_link_opens_after_the_phone_check_and_counts_views(world: World) -> None:
    w = world
    made = _create(w, verify="phone4", hours=48, max_views=2)
    token = made["token"]
    assert made["url"].endswith(f"/s?t={token}") and made["code"] is None
    assert made["qr_svg"].startswith("<?xml") and "<svg" in made["qr_svg"]
    info = w.client.get("/api/s/info", params={"t": token}).json()
    assert info["verify"] == "phone4" and info["remaining_views"] == 2
    # nothing is shown before the check
    _problem(w.client.get("/api/s/study", params={"t": token}), 401)
    _problem(_verify(w, token, "0000"), 401)
    r = _verify(w, token, PHONE_LAST4)
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert (
        "radcloud_share=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    )
    summary = w.client.get("/api/s/study", params={"t": token}).json()
    assert summary["deidentified"] and summary["instances"] == 3
    series = w.client.get("/api/s/series", params={"t": token}).json()
    se, inst = series[0]["SeriesInstanceUID"], series[0]["instances"][0]["SOPInstanceUID"]
    png = w.client.get(f"/api/s/series/{se}/instances/{inst}/rendered",
                       params={"t": token, "format": "png"})  # fmt: skip
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    # the cookie opens only its own link
    other = _create(w, verify="none")["token"]
    _problem(w.client.get("/api/s/study", params={"t": other}), 401)
    listed = w.client.get(f"/api/studies/{w.study}/shares", headers=w.staff).json()
    mine = next(s for s in listed if s["id"] == made["share"]["id"])
    assert (mine["views"], mine["remaining_views"], mine["state"]) == (1, 1, "active")
    assert _verify(w, token, PHONE_LAST4).status_code == 200
    _problem(_verify(w, token, PHONE_LAST4), 410)  # two views allowed, both used
    page = w.client.get("/s", params={"t": token})
    assert page.status_code == 410 and "text/html" in page.headers["content-type"]


def test_every_open_is_audited_under_the_share_never_its_token(world: World) -> None:
    w = world
    made = _create(w, verify="code")
    _verify(w, made["token"], "wrong")
    _verify(w, made["token"], made["code"])
    audit.auditor(w.archive).flush()
    with w.archive.read() as conn:
        rows = conn.execute(
            select(AuditEvent.action, AuditEvent.result, AuditEvent.target, AuditEvent.detail)
            .where(AuditEvent.action.like("share.%"))
        ).all()  # fmt: skip
    opens = [(r.action, r.result) for r in rows if r.action == "share.open"]
    assert ("share.open", "denied") in opens and ("share.open", "success") in opens
    assert all(made["token"] not in f"{r.target}{r.detail}" for r in rows)
    assert {r.target for r in rows} == {f"share:{made['share']['id']}"}


# ------------------------------------------------------------------ refusals


def test_expired_revoked_and_wrong_code_get_a_clear_answer_and_nothing_else(
    world: World,
) -> None:
    w, a = world, world.archive
    expired, revoked, coded = (_create(w, verify="code") for _ in range(3))
    with a.write() as conn:
        conn.execute(update(Share).where(Share.id == expired["share"]["id"])
                     .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))  # fmt: skip
    r = w.client.delete(f"/api/studies/{w.study}/shares", params={"id": revoked["share"]["id"]},
                        headers=w.staff)  # fmt: skip
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    for made, word in ((expired, "expired"), (revoked, "withdrawn")):
        assert word in _problem(_verify(w, made["token"], made["code"]), 410)["detail"]
        _problem(w.client.get("/api/s/info", params={"t": made["token"]}), 410)
        page = w.client.get("/s", params={"t": made["token"]})
        assert page.status_code == 410 and word in page.text
        assert "<html" in page.text and not [t for t in IDENTIFYING if t in page.text]
    # a wrong code: 401 with the attempts left, then the link locks, right answer or not
    limit = a.settings.share_max_attempts
    for n in range(limit - 1):
        assert (
            f"{limit - 1 - n} attempt"
            in _problem(_verify(w, coded["token"], "000000"), 401)["detail"]
        )
    _problem(_verify(w, coded["token"], "000000"), 423)
    _problem(_verify(w, coded["token"], coded["code"]), 423)
    assert w.client.get("/s", params={"t": coded["token"]}).status_code == 423


def test_unknown_tokens_are_all_the_same_404_and_guessing_is_rate_limited(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    real = _create(w, verify="none")["token"]
    compared: list[int] = []
    original = links.hmac.compare_digest
    monkeypatch.setattr(links.hmac, "compare_digest",
                        lambda x, y: compared.append(1) or original(x, y))  # fmt: skip
    guesses = [real[:-1] + ("A" if real[-1] != "A" else "B"), real[:-4], real + "x",
               "x" * 43, links.hash_token(real), "0" * 64, "y" * 600]  # fmt: skip
    bodies = {w.client.get("/api/s/info", params={"t": g}).text for g in guesses}
    assert len(bodies) == 1 and '"status":404' in bodies.pop()
    for g in guesses[:2]:
        _problem(_verify(w, g, None), 404)
        assert w.client.get("/s", params={"t": g}).status_code == 404
    assert w.client.get("/api/s/info", params={"t": real}).status_code == 200
    assert compared  # the found row's hash is compared in constant time
    # the index holds only the SHA-256 of a token
    with w.archive.read() as conn:
        rows = [tuple(str(v) for v in r) for r in conn.execute(select(Share))]
    assert any(hashlib.sha256(real.encode()).hexdigest() in r for r in rows)
    assert not any(real in v for r in rows for v in r)
    # per address: after share_ip_failures failures even the real link is refused (429)
    limit = w.archive.settings.share_ip_failures
    for i in range(limit):
        w.client.get("/api/s/info", params={"t": f"guess-{i:040d}"})
    _problem(w.client.get("/api/s/info", params={"t": real}), 429)
    links.FAILURES.reset()
    assert w.client.get("/api/s/info", params={"t": real}).status_code == 200


def test_another_hospitals_study_is_not_found_whatever_the_body(world: World) -> None:
    w = world
    url = f"/api/studies/{w.study}/shares"
    for body in (None, {"hours": "soon"}, {"verify": "telepathy"}, {"kind": "share"}):
        r = w.client.post(url, json=body, headers=w.stranger)
        assert r.status_code == 404, r.text
    assert w.client.get(url, headers=w.stranger).status_code == 404
    assert w.client.delete(url, params={"id": 1}, headers=w.stranger).status_code == 404
    # the owner's staff get the validation error for the same bad bodies
    assert w.client.post(url, json={"hours": "soon"}, headers=w.staff).status_code == 400
    assert w.client.post(url, json={"verify": "telepathy"}, headers=w.staff).status_code == 400
    r = w.client.post(url, json={"hours": 24 * 10_000}, headers=w.staff)
    assert r.status_code == 422 and "days" in r.text


# ------------------------------------------------------------------ re-sharing


def test_a_reshare_stays_within_its_parents_limits_and_dies_with_it(world: World) -> None:
    w = world
    parent = _create(w, kind="patient", verify="phone4", hours=10, max_views=3)
    assert _verify(w, parent["token"], PHONE_LAST4).status_code == 200
    more = {"token": parent["token"], "max_views": 5, "verify": "code"}
    r = w.client.post("/api/s/reshare", json=more)
    assert r.status_code == 422 and "at most 2" in r.text
    r = w.client.post("/api/s/reshare",
                      json={"token": parent["token"], "hours": 500, "verify": "code"})  # fmt: skip
    assert r.status_code == 201, r.text
    child = r.json()
    assert child["share"]["deidentify"] and child["share"]["parent_id"] == parent["share"]["id"]
    assert child["share"]["remaining_views"] == 2 and child["code"]
    assert child["share"]["expires_at"] <= parent["share"]["expires_at"]
    listed = w.client.get("/api/s/shares", params={"t": parent["token"]}).json()
    assert [s["id"] for s in listed] == [child["share"]["id"]]
    assert _verify(w, child["token"], child["code"]).status_code == 200
    # the holder of the parent revokes the child; the manager revokes the parent (and its tree)
    _verify(w, parent["token"], PHONE_LAST4)
    grandchild = w.client.post("/api/s/reshare", json={"token": parent["token"]}).json()
    r = w.client.post("/api/s/revoke", json={"token": parent["token"], "id": child["share"]["id"]})
    assert r.json()["state"] == "revoked"
    _problem(_verify(w, child["token"], child["code"]), 410)
    w.client.delete(f"/api/studies/{w.study}/shares", params={"id": parent["share"]["id"]},
                    headers=w.staff)  # fmt: skip
    _problem(_verify(w, grandchild["token"], grandchild["code"]), 410)


# ------------------------------------------------------------------ de-identified content


def _shared_files(w: World, token: str, answer: str | None) -> list[Any]:
    assert _verify(w, token, answer).status_code == 200
    r = w.client.get("/api/s/dicom", params={"t": token})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert "DICOMDIR" in z.namelist()
    return [dcmread(io.BytesIO(z.read(n))) for n in z.namelist()]


def test_the_dicom_served_through_a_share_holds_no_identifying_value(
    world: World, tmp_path: Path
) -> None:
    w = world
    made = _create(w, verify="code")
    files = _shared_files(w, made["token"], made["code"])
    assert len(files) == 4  # DICOMDIR + three images
    for ds in files:
        assert leaks(ds) == [], leaks(ds)  # every attribute, sequences and file meta included
    images = [ds for ds in files if "PixelData" in ds]
    assert {ds.PatientIdentityRemoved for ds in images} == {"YES"}
    # the DICOMDIR is a readable File-set naming the shared (replaced) UIDs
    r = w.client.get("/api/s/dicom", params={"t": made["token"]})
    (tmp_path / "z").mkdir()
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path / "z")
    fs = FileSet(tmp_path / "z" / "DICOMDIR")
    assert sorted(i.SOPInstanceUID for i in fs) == sorted(ds.SOPInstanceUID for ds in images)
    # what the JSON calls show is de-identified too, with the same UIDs as the files
    for path in ("/api/s/study", "/api/s/series"):
        text = w.client.get(path, params={"t": made["token"]}).text
        assert not [t for t in IDENTIFYING if t.lower() in text.lower()], text
    series = w.client.get("/api/s/series", params={"t": made["token"]}).json()
    assert series[0]["SeriesInstanceUID"] == images[0].SeriesInstanceUID
    # another share of the same study: other UIDs (not linkable), same within each share
    second = _create(w, verify="none")
    others = [ds for ds in _shared_files(w, second["token"], None) if "PixelData" in ds]
    assert not {ds.SOPInstanceUID for ds in others} & {ds.SOPInstanceUID for ds in images}
    assert len({ds.StudyInstanceUID for ds in others}) == 1
    # a de-identified link has no report or film (they name the patient)
    _verify(w, made["token"], made["code"])
    _problem(w.client.get("/api/s/report", params={"t": made["token"]}), 404)
    _problem(w.client.get("/api/s/film", params={"t": made["token"]}), 404)


def test_a_patient_link_is_identified(world: World) -> None:
    w = world
    made = _create(w, kind="patient", verify="id4")
    assert made["share"]["deidentify"] is False
    assert _verify(w, made["token"], "0017").status_code == 200  # PatientID HX20240017
    summary = w.client.get("/api/s/study", params={"t": made["token"]}).json()
    assert summary["PatientID"] == "HX20240017" and summary["StudyInstanceUID"] == w.study
    # control for the walk above: the patient's own files do carry the identifiers
    files = _shared_files(w, made["token"], "0017")
    assert all(leaks(ds) for ds in files if "PixelData" in ds)
    originals = {str(patient_ct().SeriesInstanceUID)}
    assert {str(ds.SeriesInstanceUID) for ds in files if "PixelData" in ds} == originals
    _verify(w, made["token"], "0017")
    # no report signed yet: a clear answer, not an error page
    r = w.client.get("/api/s/report", params={"t": made["token"]})
    assert r.status_code == 409 and "signed" in r.json()["detail"]


def test_guesses_arriving_at_once_never_exceed_the_attempts(world: World) -> None:
    """Each answer takes an attempt before it is compared, so a burst cannot out-guess the lock."""
    from concurrent.futures import ThreadPoolExecutor

    w = world
    made = _create(w, verify="code")
    limit = w.archive.settings.share_max_attempts

    def guess(n: int) -> str:
        try:
            links.verify(w.archive, made["token"], f"{n:06d}", source=f"10.0.0.{n}")
        except Exception as exc:  # noqa: BLE001 - the outcome is what is counted
            return str(getattr(exc, "detail", exc))
        return "opened"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(guess, range(100, 124)))
    assert "opened" not in outcomes
    assert sum(o.startswith("wrong answer") for o in outcomes) == limit
    with w.archive.read() as conn:
        assert conn.scalar(select(Share.attempts).where(Share.id == made["share"]["id"])) == limit


def test_rendered_images_of_a_deidentified_link_mask_the_burned_in_band(world: World) -> None:
    import numpy as np
    from PIL import Image
    from pydicom.uid import UltrasoundImageStorage

    from radcloud.share.deid import band_height

    w = world
    ds = patient_ct(sop=generate_uid())
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UltrasoundImageStorage
    ds.Modality, ds.Rows, ds.Columns = "US", 240, 320
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = np.tile(np.linspace(100, 250, 320).astype(np.uint8), (240, 1)).tobytes()
    for name in ("RescaleIntercept", "RescaleSlope", "WindowCenter", "WindowWidth"):
        if name in ds:
            delattr(ds, name)
    ingest.store_dataset(w.archive, ds, principal=accounts.cli_principal(1))
    url = f"/api/studies/{ds.StudyInstanceUID}/shares"

    def top_and_rest(kind: str) -> tuple[int, int]:
        r = w.client.post(url, json={"kind": kind, "verify": "none"}, headers=w.staff)
        token = r.json()["token"]
        assert _verify(w, token, None).status_code == 200
        series = w.client.get("/api/s/series", params={"t": token}).json()[0]
        inst = series["instances"][0]["SOPInstanceUID"]
        png = w.client.get(f"/api/s/series/{series['SeriesInstanceUID']}/instances/{inst}"
                           "/rendered", params={"t": token, "format": "png"})  # fmt: skip
        img = np.asarray(Image.open(io.BytesIO(png.content)).convert("L"))
        band = band_height(240)
        return round(float(img[: band - 1].mean())), round(float(img[band + 1 :].mean()))

    top, rest = top_and_rest("share")
    assert top == 0 and rest > 0
    top, rest = top_and_rest("patient")  # the patient's own link shows the image as it is
    assert top == rest > 0


def test_a_link_to_a_study_later_restricted_to_a_care_team_still_opens(world: World) -> None:
    from radcloud.auth import studies
    from radcloud.auth.access import SYSTEM

    w = world
    made = _create(w, verify="none")
    team = accounts.create_group(w.archive, 1, "vip team", "care_team")
    studies.restrict(w.archive, SYSTEM, w.study, team)
    assert _verify(w, made["token"], None).status_code == 200
    r = w.client.get("/api/s/study", params={"t": made["token"]})
    assert r.status_code == 200 and r.json()["instances"] == 3
    # while the radiologist outside the team no longer finds the study to share
    assert w.client.get(f"/api/studies/{w.study}/shares", headers=w.staff).status_code == 404
