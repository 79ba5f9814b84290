"""The patient's phone page of a share link (``/s?t=…``, ``web/static/patient``).

HTTP: the page and its assets go out with a strict CSP and no referrer; a link
that does not open (unknown, expired, revoked, locked, too many failures) gets a
page in Chinese and English that says why and carries no patient data; the
rendered images take a window (W/L presets) and the report comes as data for
the page.

Browser: ``tests/js/patient.spec.mjs`` (playwright-core, Debian Chromium) with a
phone (390×844, touch) against a real HTTP server (uvicorn on a socket) holding
a synthetic chest CT (24 slices of 256×256 pixels of 0.7 mm) with a signed
report: it opens the patient's link, answers the question, swipes through the
slices, changes the CT window, pinches, measures a length (100 pixels = 70 mm),
plays the cine, reads the report, zooms the e-film, shares the study onward
(link, code, QR code) and downloads the film PDF; the doctor who opens the onward
(de-identified) link reads the report text without the patient's identifiers; a
patient link covering two signed exams shows two cards on the timeline, and the
older one's report opens from its card; then an expired, a revoked and
an unknown link, and a wrong code until the link locks, each show their page
and no patient data.  Screenshots are copied to
``/tmp/radcloud-shots/patient-*.png``.
"""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _browser
import httpx
import pytest
import uvicorn
from _report_world import ACCESSION, FINDINGS, IMPRESSION, PATIENT, World, make_world
from sqlalchemy import update

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts, sessions
from radcloud.config import Settings
from radcloud.report import service
from radcloud.share import links, publish
from radcloud.share.models import Share
from radcloud.testing.phantom import chest_ct_series
from radcloud.web.app import create_app

SPEC = _browser.JS / "patient.spec.mjs"
SLICES, SIZE, SPACING = 24, 256, 0.7  # make_world's phantom: chest_ct_series(…, pixel_spacing=0.7)
#: What no refusal page may show: the patient's name (both forms), ID and accession number.
FORBIDDEN = ["王芳", "Wang", "Fang", "P100", ACCESSION]
SHOTS = ("gate", "home", "images", "images-lung", "images-measure", "report", "report-en",
         "film-fit", "film", "share", "download", "expired", "revoked", "unknown", "wrong-code",
         "onward-report", "timeline", "exam-older", "report-older", "share-all", "locked",
         "desktop-images", "desktop-home", "failure-0")  # fmt: skip
OLDER_FINDINGS = "两肺纹理清晰，未见结节。"
OLDER_IMPRESSION = "胸部 CT 平扫未见异常。"


@dataclass
class Site:
    archive: Archive
    world: World
    base: str
    staff: dict[str, str]  # Authorization of the attending radiologist

    def link(self, **body: Any) -> dict[str, Any]:
        """A share link made through the API, as a hospital would."""
        r = httpx.post(f"{self.base}/api/studies/{self.world.study}/shares", json=body,
                       headers=self.staff, timeout=30)  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())

    def expire(self, made: dict[str, Any]) -> None:
        with self.archive.write() as conn:
            conn.execute(update(Share).where(Share.id == made["share"]["id"])
                         .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))  # fmt: skip

    def revoke(self, made: dict[str, Any]) -> None:
        r = httpx.delete(
            f"{self.base}/api/studies/{self.world.study}/shares",
            params={"id": made["share"]["id"]}, headers=self.staff, timeout=30,
        )  # fmt: skip
        assert r.status_code == 200, r.text


def sign_report(w: World) -> None:
    a, s = w.archive, w.study
    service.create(a, w.attending, s)
    service.save(a, w.attending, s, {"fields": {"findings": FINDINGS, "impression": IMPRESSION}})
    service.sign(a, w.attending, s)


def history_link(site: Site) -> str:
    """An older exam of the same patient with a signed report; both exams published: the URL
    of the patient's link (it opens the exam history)."""
    a, w = site.archive, site.world
    older = list(chest_ct_series(4, 64, 64, seed=3, patient_name=PATIENT, patient_id="P100",
                                 study_date="20240105", accession_number="ACC-OLD"))  # fmt: skip
    for ds in older:
        ingest.store_dataset(a, ds, principal=accounts.cli_principal(1))
    uid = str(older[0].StudyInstanceUID)
    service.create(a, w.attending, uid)
    service.save(
        a,
        w.attending,
        uid,
        {"fields": {"findings": OLDER_FINDINGS, "impression": OLDER_IMPRESSION}},
    )
    service.sign(a, w.attending, uid)
    assert publish.publish_study(a, uid)["published"]
    out = publish.publish_study(a, w.study)
    return f"{site.base}/s?t={out['url'].split('t=')[1]}"


def serve(archive: Archive) -> Iterator[str]:
    """A uvicorn server on a free port for ``archive``; yields its base URL."""
    config = uvicorn.Config(create_app(archive), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def open_site(data_dir: Path, slices: int = SLICES, size: int = SIZE) -> Iterator[Site]:
    """The archive with the study and its signed report, served over HTTP (also for the bench)."""
    archive = Archive.open(Settings(data_dir=data_dir, dicom_port=0))  # type: ignore[call-arg]
    try:
        w = make_world(archive, slices=slices, size=size)
        sign_report(w)
        staff = {"Authorization": "Bearer "
                 + sessions.issue(archive, w.attending.user_id, sessions.API)}  # fmt: skip
        for base in serve(archive):
            yield Site(archive, w, base, staff)
    finally:
        archive.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    links.FAILURES.reset()
    yield from open_site(tmp_path / "data")
    links.FAILURES.reset()


def _clean(text: str) -> None:
    assert not [word for word in FORBIDDEN if word.lower() in text.lower()], text


# ------------------------------------------------------------------ HTTP


def test_the_page_its_assets_and_the_refusal_pages(site: Site) -> None:
    made = site.link(kind="patient", verify="id4", hours=24 * 90)
    page = httpx.get(f"{site.base}/s", params={"t": made["token"]})
    assert page.status_code == 200 and '<script src="/s/assets/patient.js" defer>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "'unsafe-inline'" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    _clean(page.text)  # the page itself holds nothing of the patient
    for name, media in (("patient.js", "text/javascript"), ("style.css", "text/css"),
                        ("icon.svg", "image/svg+xml")):  # fmt: skip
        r = httpx.get(f"{site.base}/s/assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
    js = httpx.get(f"{site.base}/s/assets/patient.js")  # httpx asks for gzip and unpacks it
    assert js.headers["content-encoding"] == "gzip" and js.text.startswith("// The patient's page")
    for bad in ("index.html", "../patient.js", "nope.js", "..%2Fstyle.css"):
        assert httpx.get(f"{site.base}/s/assets/{bad}").status_code == 404, bad
    # every way a link fails: its status, why in both languages, nothing of the patient
    expired, revoked = site.link(verify="code"), site.link(verify="code")
    site.expire(expired)
    site.revoke(revoked)
    for token, status, words in (
        (expired["token"], 410, ("链接已过期", "expired")),
        (revoked["token"], 410, ("链接已撤回", "withdrawn")),
        ("x" * 43, 404, ("链接无效", "Link not found")),
        ("", 200, ("打开检查结果", "Open your results")),
    ):
        r = httpx.get(f"{site.base}/s", params={"t": token})
        assert r.status_code == status and all(w in r.text for w in words), r.text
        assert "<script" not in r.text and r.headers["content-security-policy"] == csp
        _clean(r.text)
    for n in range(site.archive.settings.share_ip_failures):
        httpx.get(f"{site.base}/api/s/info", params={"t": f"guess-{n:040d}"})
    r = httpx.get(f"{site.base}/s", params={"t": made["token"]})
    assert r.status_code == 429 and "尝试次数过多" in r.text and "Too many attempts" in r.text


def test_rendered_images_take_a_window_and_the_report_comes_as_data(site: Site) -> None:
    made = site.link(kind="patient", verify="id4", hours=24)
    with httpx.Client(base_url=site.base, timeout=60) as c:
        assert c.post("/api/s/verify", json={"token": made["token"], "answer": "p100"}).is_success
        t = {"t": made["token"]}
        series = c.get("/api/s/series", params=t).json()[0]
        assert series["PixelSpacing"] == [SPACING, SPACING]
        assert (series["Rows"], series["Columns"]) == (SIZE, SIZE)
        inst = series["instances"][SLICES // 2]["SOPInstanceUID"]
        url = f"/api/s/series/{series['SeriesInstanceUID']}/instances/{inst}/rendered"
        plain = c.get(url, params=t).content
        lung = c.get(url, params={**t, "window": "-600,1500"}).content
        bone = c.get(url, params={**t, "window": "400,1800"}).content
        assert plain[:2] == lung[:2] == b"\xff\xd8" and len({plain, lung, bone}) == 3
        assert c.get(url, params={**t, "window": "40,-5"}).status_code == 400
        report = c.get("/api/s/report", params={**t, "format": "json"}).json()
        assert report["status"] == "final" and report["study"]["patient_id"] == "P100"
        text = " ".join(x["text"] for x in report["texts"])
        assert FINDINGS in text and IMPRESSION in text and report["signer"]
        assert c.get("/api/s/report", params=t).content.startswith(b"%PDF")
        # a de-identified share gives the report's text without identifiers, and no PDF
        child = c.post("/api/s/reshare", json={"token": made["token"], "verify": "none"}).json()
        assert c.post("/api/s/verify", json={"token": child["token"]}).is_success
        r = c.get("/api/s/report", params={"t": child["token"], "format": "json"})
        assert r.status_code == 200 and FINDINGS in r.text and r.json()["deidentified"]
        _clean(r.text)
        assert c.get("/api/s/report", params={"t": child["token"]}).status_code == 404


# ------------------------------------------------------------------ the browser


@pytest.mark.slow
def test_the_patient_page_on_a_phone(site: Site, tmp_path: Path) -> None:
    _browser.node()
    main = site.link(kind="patient", verify="id4", hours=24 * 90)
    coded, expired, revoked = (site.link(verify="code") for _ in range(3))
    site.expire(expired)
    site.revoke(revoked)
    env = {"PATIENT": json.dumps({
        "main": main["url"], "answer": "P100", "coded": coded["url"], "expired": expired["url"],
        "revoked": revoked["url"], "unknown": f"{site.base}/s?t={'Q' * 43}",
        "attempts": site.archive.settings.share_max_attempts, "spacing": SPACING,
        "slices": SLICES, "findings": FINDINGS, "impression": IMPRESSION,
        "forbidden": FORBIDDEN, "downloads": str(tmp_path / "downloads"),
        "history": history_link(site), "olderFindings": OLDER_FINDINGS,
    })}  # fmt: skip
    shots = tmp_path / "shots"
    run = _browser.run_spec(SPEC, site.base, shots, tmp_path, env, 300)
    _browser.keep_shots(shots, {n: f"patient-{n}" for n in SHOTS})
    assert run.returncode == 0, f"browser scenario failed:\n{run.stdout}\n{run.stderr}"
    assert "ok: the patient's page passed" in run.stdout
    assert {f"{n}" for n in SHOTS[:-1]} <= {p.stem for p in shots.glob("*.png")}
    film = tmp_path / "downloads" / "film.pdf"
    assert film.read_bytes().startswith(b"%PDF")
    with zipfile.ZipFile(tmp_path / "downloads" / "study.zip") as z:  # the originals + DICOMDIR
        names = z.namelist()
    assert "DICOMDIR" in names and len(names) > SLICES
