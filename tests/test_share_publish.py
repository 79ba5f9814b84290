"""SMS providers (a real HTTP gateway the test starts), QR codes, and publishing on signing."""

from __future__ import annotations

import io
import json
import threading
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from _report_world import World, make_world
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid
from sqlalchemy import select
from test_deid import patient_ct

from radcloud.archive import ingest
from radcloud.archive.service import Archive
from radcloud.auth import accounts
from radcloud.report import service
from radcloud.share import links, publish, sms
from radcloud.share.models import Share
from radcloud.web.app import create_app


class Gateway:
    """A small SMS gateway: records each POST; answers ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), json.loads(body)))
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    links.FAILURES.reset()
    yield


def test_the_http_gateway_gets_json_with_its_token(gateway: Gateway) -> None:
    p = sms.HttpGatewayProvider(gateway.url, "gw-secret-1", sign="华西医院")
    p.send("+8613800138000", "您好")
    headers, body = gateway.received[0]
    assert headers["X-Api-Token"] == "gw-secret-1"
    assert body == {"phone": "+8613800138000", "text": "您好", "sign": "华西医院"}
    gateway.status = 500
    with pytest.raises(sms.SmsFailed, match="500"):
        p.send("+8613800138000", "again")
    gateway.close()
    with pytest.raises(sms.SmsFailed, match="unreachable"):
        sms.HttpGatewayProvider(gateway.url, None, timeout=2).send("13800138000", "x")


def test_messages_are_chinese_and_carry_link_expiry_and_code() -> None:
    until = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    text = sms.message("shared", sign="放射科", url="https://h.example/s?t=abc", until=until,
                       code="123456")  # fmt: skip
    assert text.startswith("【放射科】") and "https://h.example/s?t=abc" in text
    assert "验证码：123456" in text and "2026-12-01" in text
    plain = sms.message("published", sign="放射科", url="u", until=until, name="王芳", exam="CT")
    assert "王芳您好" in plain and "验证码" not in plain and "后四位" in plain
    assert sms.normalise("+86 138-0013-8000\\010-1234") == "+8613800138000"
    assert sms.mask("+8613800138000") == "*********8000"
    with pytest.raises(Exception, match="phone"):
        sms.normalise("n/a")


def test_qr_codes_encode_the_link() -> None:
    import qrcode

    svg = sms.qr_svg("https://h.example/s?t=abc")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg") and root.find(".//{http://www.w3.org/2000/svg}path") is not None
    assert sms.qr_svg("https://h.example/s?t=abd") != svg
    png = sms.qr_png("https://h.example/s?t=abc")
    assert png.startswith(b"\x89PNG")
    # the same modules as the library's own encoding of the URL
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data("https://h.example/s?t=abc")
    qr.make(fit=True)
    assert qr.version >= 1 and any(any(row) for row in qr.get_matrix())


def _sign(w: World, file_outputs: bool = False) -> None:
    a, s = w.archive, w.study
    service.create(a, w.attending, s)
    service.save(a, w.attending, s, {"fields": {"findings": "双肺纹理清晰。",
                                                "impression": "胸部 CT 未见异常。"}})  # fmt: skip
    service.sign(a, w.attending, s, publish=file_outputs)


def test_signing_a_report_publishes_the_patients_link(archive: Archive) -> None:
    w = make_world(archive, slices=3, size=96)
    client = TestClient(create_app(archive))
    publish.install(archive)  # as the server's start-up does (create_app does not)
    _sign(w, file_outputs=True)  # also files the SR and the encapsulated PDF in the study
    with archive.read() as conn:
        rows = conn.execute(select(Share)).all()
    assert len(rows) == 1
    share = rows[0]
    assert (share.kind, share.deidentify, share.verify_method) == ("patient", False, "id4")
    # published once: another delivery of the event, or an amendment, adds nothing
    assert publish.drain(archive) == 0
    assert publish.publish_study(archive, w.study)["reason"] == "published before"
    # the patient opens it: report PDF and e-film come with the identified link
    made = links.create(archive, w.attending, w.study, kind="patient", verify="id4")
    r = client.post("/api/s/verify", json={"token": made.token, "answer": "p100"})
    assert r.status_code == 200, r.text
    pdf = client.get("/api/s/report", params={"t": made.token})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    film = client.get("/api/s/film", params={"t": made.token, "format": "png"})
    assert film.status_code == 200 and film.content.startswith(b"\x89PNG")
    qr = client.get("/api/s/qr", params={"t": made.token})
    assert qr.status_code == 200 and b"<svg" in qr.content
    # the zip holds the images and the filed report objects (SR, PDF) under a DICOMDIR
    z = zipfile.ZipFile(io.BytesIO(client.get("/api/s/dicom", params={"t": made.token}).content))
    names = z.namelist()
    assert "DICOMDIR" in names and len(names) == 1 + len(w.sops) + 2, names


def test_publishing_texts_the_patient_through_the_gateway(
    make_archive: Any, gateway: Gateway
) -> None:
    archive: Archive = make_archive(sms_provider="http", sms_url=gateway.url, sms_token="t-1",
                                    public_url="https://pacs.example.org")  # fmt: skip
    for n in range(2):
        ingest.store_dataset(
            archive, patient_ct(n + 1, sop=generate_uid()), principal=accounts.cli_principal(1)
        )
    study = str(patient_ct().StudyInstanceUID)
    out = publish.publish_study(archive, study)
    assert out["published"] and out["sms"] and out["share"]["verify"] == "phone4"
    headers, body = gateway.received[0]
    assert headers["X-Api-Token"] == "t-1" and body["phone"] == "+862885422114"
    assert out["url"] in body["text"] and body["text"].startswith("【放射科】")
    token = out["url"].split("t=")[1]
    client = TestClient(create_app(archive))
    assert client.post("/api/s/verify", json={"token": token, "answer": "2114"}).status_code == 200
    # a study outside the publishing rules is left alone
    other: Archive = make_archive(share_publish_modalities="MR")
    assert publish.publish_study(other, study)["published"] is False


def test_a_manager_texts_a_link_to_a_phone_given_in_the_request(
    make_archive: Any, gateway: Gateway
) -> None:
    archive: Archive = make_archive(sms_provider="http", sms_url=gateway.url)
    ingest.store_dataset(archive, patient_ct(1, sop=generate_uid()),
                         principal=accounts.cli_principal(1))  # fmt: skip
    rad = accounts.create_user(archive, "rad.sms", "share-pass-12", roles=["radiologist"])
    from radcloud.auth import sessions

    headers = {"Authorization": "Bearer " + sessions.issue(archive, rad, sessions.API)}
    client = TestClient(create_app(archive))
    url = f"/api/studies/{patient_ct().StudyInstanceUID}/shares"
    r = client.post(url, headers=headers,
                    json={"verify": "code", "send_sms": True, "phone": "13900001111"})  # fmt: skip
    assert r.status_code == 201 and r.json()["sms"] is True, r.text
    body = gateway.received[0][1]
    assert body["phone"] == "13900001111" and r.json()["code"] in body["text"]
    # the gateway fails: the link is made and the answer says the SMS was not sent
    gateway.status = 503
    r = client.post(url, headers=headers, json={"send_sms": True})  # the stored phone
    assert r.status_code == 201 and r.json()["sms"] is False
    assert gateway.received[-1][1]["phone"] == "+862885422114"
    # a number that cannot be texted: refused, and no link is made
    before = len(client.get(url, headers=headers).json())
    r = client.post(url, headers=headers, json={"send_sms": True, "phone": "call me"})
    assert r.status_code == 422 and len(client.get(url, headers=headers).json()) == before


@pytest.mark.slow
def test_the_server_publishes_a_signed_study_by_itself(tmp_path: Path) -> None:
    """``radcloud serve`` installs the publisher at start-up (create_app does not): a report
    signed over HTTP gives the patient's link, seen by the manager's list of links."""
    import httpx
    from _server import Server

    files = tmp_path / "in"
    files.mkdir()
    for n in range(2):
        patient_ct(n + 1, sop=generate_uid()).save_as(files / f"{n}.dcm", enforce_file_format=True)
    study = str(patient_ct().StudyInstanceUID)
    server = Server(tmp_path / "data")
    server.start()
    try:
        for args in (("import", str(files)),
                     ("user", "create", "rad.pub", "--role", "radiologist", "--password",
                      "publish-pass-1")):  # fmt: skip
            r = server.cli(*args)
            assert r.returncode == 0, r.stdout + r.stderr
        token = server.cli("token", "create", "--user", "rad.pub").stdout.strip()
        base = f"http://127.0.0.1:{server.http_port}/api/studies/{study}"
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            assert c.get(f"{base}/shares").json() == []
            assert c.post(f"{base}/report").status_code == 201
            fields = {"findings": "双肺纹理清晰。", "impression": "未见异常。"}
            assert c.put(f"{base}/report", json={"fields": fields}).status_code == 200
            assert c.post(f"{base}/report/sign").status_code == 200
            made = c.get(f"{base}/shares").json()
        assert [(s["kind"], s["scope"], s["created_by"]) for s in made] == [
            ("patient", "patient", links.PUBLISHER)
        ]
    finally:
        server.stop()
