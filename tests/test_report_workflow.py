"""The report workflow on both back ends: roles, states, locking, versions, AI marks, events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from _report_world import FINDINGS, IMPRESSION, FakeAnalysis, World, make_world
from sqlalchemy import select

from radcloud.archive.service import Archive
from radcloud.auth import audit
from radcloud.errors import Forbidden, InvalidRequest, NotFound
from radcloud.report import events, phrases, prefill, service
from radcloud.report import templates as tpl
from radcloud.report.errors import ReportLocked, StaleVersion, WrongState
from radcloud.store.models import AuditEvent


@pytest.fixture
def world(archive: Archive) -> World:
    return make_world(archive, slices=3, size=64)


def _write(w: World, p: object = None, **fields: object) -> dict:
    values = {"findings": FINDINGS, "impression": IMPRESSION, **fields}
    return service.save(w.archive, p or w.resident, w.study, {"fields": values})  # type: ignore[arg-type]


def test_resident_writes_attending_reviews_and_signs(world: World) -> None:
    a, s = world.archive, world.study
    r = service.create(a, world.resident, s)
    assert (r["status"], r["version"], r["template"]) == ("draft", 1, "chest_ct")
    assert r["author"] == "李住院" and r["lock"]["holder"] == "res.li"
    _write(world, lung_rads="4A", largest_nodule_mm=9.5)
    r = service.submit(a, world.resident, s)
    assert r["status"] == "preliminary" and r["lock"] is None
    with pytest.raises(WrongState, match="review"):  # submitted: the resident waits
        _write(world)
    with pytest.raises(Forbidden):
        service.sign(a, world.resident, s, publish=False)
    with pytest.raises(Forbidden):
        service.return_to_author(a, world.resident, s, "looks fine to me")
    r = service.return_to_author(a, world.attending, s, "请补充结节位置（肺段）")
    assert r["status"] == "draft"

    audit.auditor(a).flush()
    with a.read() as conn:
        trail = conn.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.study_uid)
            .where(AuditEvent.action.like("report.%")).order_by(AuditEvent.id)
        ).all()  # fmt: skip
    assert [t.action for t in trail] == [
        "report.create", "report.save", "report.submit", "report.return"]  # fmt: skip
    assert trail[-1].actor == "att.zhang" and trail[-1].study_uid == s
    _write(world, findings=FINDINGS + " 位于右肺上叶尖段。")
    service.submit(a, world.resident, s)
    r = service.sign(a, world.attending, s, publish=False)
    assert r["status"] == "final" and r["signer"] == "张主任" and r["signed_at"] is not None
    assert r["content"]["fields"]["lung_rads"] == "4A"
    history = service.versions(a, world.attending, s)
    assert [(v["action"], v["status"]) for v in history] == [
        ("create", "draft"), ("save", "draft"), ("submit", "preliminary"),
        ("return", "draft"), ("save", "draft"), ("submit", "preliminary"), ("sign", "final"),
    ]  # fmt: skip
    assert history[3]["reason"] == "请补充结节位置（肺段）"
    assert [v["user"] for v in history][-1] == "张主任"


def test_a_signed_report_is_immutable_and_amended_as_a_new_version(world: World) -> None:
    a, s = world.archive, world.study
    service.create(a, world.attending, s)
    _write(world, world.attending)
    signed = service.sign(a, world.attending, s, publish=False)
    with pytest.raises(WrongState, match="amend"):
        _write(world, world.attending, findings="changed after signing")
    with pytest.raises(WrongState):
        service.sign(a, world.attending, s, publish=False)
    with pytest.raises(Forbidden):
        service.amend(a, world.resident, s, {"fields": {"impression": "x"}}, "typo")
    with pytest.raises(InvalidRequest, match="reason"):
        service.amend(a, world.attending, s, {"fields": {"impression": "x"}}, "  ")
    amended = service.amend(
        a, world.attending, s, {"fields": {"impression": "右肺上叶结节，Lung-RADS 4B。"}},
        "结节分类更正", base_version=signed["version"],
    )  # fmt: skip
    assert amended["status"] == "amended" and amended["version"] == signed["version"] + 1
    # the signed version is kept, word for word
    old = service.get(a, world.clinician, s, version=signed["version"])
    assert old is not None and old["content"]["fields"]["impression"] == IMPRESSION
    history = service.versions(a, world.attending, s)
    assert history[-1]["reason"] == "结节分类更正"
    assert history[-2]["content_sha256"] == next(
        v["content_sha256"] for v in history if v["version"] == signed["version"]
    )
    assert len({v["content_sha256"] for v in history[-2:]}) == 2


def test_one_editor_at_a_time_with_a_lock_that_expires(world: World) -> None:
    a, s = world.archive, world.study
    service.create(a, world.resident, s)  # the author holds the lock
    with pytest.raises(ReportLocked, match="res.li"):
        _write(world, world.attending)
    with pytest.raises(ReportLocked):
        service.lock(a, world.attending, s)
    service.lock(a, world.resident, s, ttl=-1)  # renewed into the past: expired now
    held = service.lock(a, world.attending, s)
    assert held["holder"] == "att.zhang"
    with pytest.raises(ReportLocked):
        _write(world, world.resident)
    with pytest.raises(ReportLocked):  # only the holder gives a lock up
        service.unlock(a, world.resident, s)
    assert service.get(a, world.attending, s)["lock"]["holder"] == "att.zhang"  # type: ignore[index]
    service.unlock(a, world.attending, s)
    assert service.get(a, world.attending, s)["lock"] is None  # type: ignore[index]
    _write(world)  # free again: the resident's save takes it


def test_an_edit_based_on_an_old_version_is_refused(world: World) -> None:
    a, s = world.archive, world.study
    service.create(a, world.resident, s)
    service.save(a, world.resident, s, {"fields": {"findings": "v2"}}, base_version=1)
    with pytest.raises(StaleVersion):
        service.save(a, world.resident, s, {"fields": {"findings": "v2'"}}, base_version=1)
    assert service.get(a, world.resident, s)["content"]["fields"]["findings"] == "v2"  # type: ignore[index]


def test_fields_are_checked_against_the_template(world: World) -> None:
    a, s = world.archive, world.study
    service.create(a, world.resident, s)
    bad = [
        {"lung_rads": "5"},  # no such Lung-RADS category
        {"largest_nodule_mm": -3},
        {"largest_nodule_mm": "9 mm"},
        {"lung_rads_s": "yes"},
        {"no_such_field": "x"},
    ]
    for fields in bad:
        with pytest.raises(InvalidRequest):
            service.save(a, world.resident, s, {"fields": fields})
    with pytest.raises(InvalidRequest, match="not in this study"):
        service.save(a, world.resident, s, {"key_images": [{"sop_uid": "1.2.3", "frame": 1}]})
    r = service.save(a, world.resident, s, {"key_images": [
        {"sop_uid": world.sops[1], "window": [-600, 1500], "caption": "结节"}]})  # fmt: skip
    assert r["content"]["key_images"][0]["series_uid"] and r["version"] == 2
    # sign needs the required impression
    service.unlock(a, world.resident, s)
    with pytest.raises(InvalidRequest, match="impression"):
        service.sign(a, world.attending, s, publish=False)


def test_readers_see_signed_reports_only_and_strangers_nothing(world: World) -> None:
    a, s = world.archive, world.study
    service.create(a, world.resident, s)
    _write(world)
    assert service.get(a, world.clinician, s) is None
    assert service.versions(a, world.clinician, s) == []
    assert service.find(a, world.clinician, accession="ACC-R1") == []
    with pytest.raises(Forbidden):
        _write(world, world.clinician)
    with pytest.raises(NotFound):
        service.get(a, world.stranger, s)
    with pytest.raises(NotFound):
        service.create(a, world.stranger, s)
    with pytest.raises(ReportLocked):  # the resident is still editing
        service.sign(a, world.attending, s, publish=False)
    service.unlock(a, world.resident, s)
    service.sign(a, world.attending, s, publish=False)
    seen = service.get(a, world.clinician, s)
    assert seen is not None and seen["status"] == "final"
    assert [v["action"] for v in service.versions(a, world.clinician, s)] == ["sign"]
    by_acc = service.find(a, world.clinician, accession="ACC-R1")
    by_pid = service.find(a, world.clinician, patient_id="P100")
    assert [r["study_uid"] for r in by_acc] == [r["study_uid"] for r in by_pid] == [s]
    assert service.find(a, world.clinician, accession="NOPE") == []
    assert service.find(a, world.stranger, patient_id="P100") == []


@pytest.fixture
def fake_ai(world: World) -> Iterator[FakeAnalysis]:
    fake = FakeAnalysis(
        world.study,
        {"lung_rads": "4A", "largest_nodule_mm": 9.5, "nodule_count": 1,
         "nodule_type": "solid", "findings": "AI: 右肺上叶实性结节 9.5 mm",
         "impression": "not-a-category-but-text-is-fine", "lung_rads_s": "maybe"},
        template="chest_ct", key_images=[{"sop_uid": world.sops[1], "frame": 1}],
    )  # fmt: skip
    remove = prefill.register_source(fake)
    yield fake
    remove()


def test_ai_prefill_is_marked_until_a_person_accepts_or_edits(
    world: World, fake_ai: FakeAnalysis
) -> None:
    a, s = world.archive, world.study
    r = service.create(a, world.resident, s)
    fields, marks = r["content"]["fields"], r["content"]["marks"]
    assert fields["lung_rads"] == "4A" and fields["largest_nodule_mm"] == 9.5
    assert "lung_rads_s" not in marks and fields["lung_rads_s"] is None  # refused value skipped
    assert marks["lung_rads"] == {"by": "ai", "source": "lung-nodules 0.9", "value": "4A",
                                  "state": "pending"}  # fmt: skip
    assert r["ai_pending"] == sorted(marks)
    assert r["content"]["key_images"][0]["sop_uid"] == world.sops[1]
    service.unlock(a, world.resident, s)
    with pytest.raises(WrongState, match="AI-filled"):
        service.sign(a, world.attending, s, publish=False)
    r = service.save(a, world.attending, s, {
        "fields": {"findings": FINDINGS, "impression": IMPRESSION, "largest_nodule_mm": 9.8},
        "accept": ["lung_rads", "nodule_count"],
    })  # fmt: skip
    marks = r["content"]["marks"]
    assert marks["largest_nodule_mm"]["state"] == "edited"
    assert marks["largest_nodule_mm"]["value"] == 9.5  # what the AI said stays on record
    assert marks["findings"]["state"] == "edited"
    assert marks["lung_rads"]["state"] == marks["nodule_count"]["state"] == "accepted"
    assert r["ai_pending"] == ["nodule_type"]
    with pytest.raises(WrongState, match="nodule_type"):
        service.sign(a, world.attending, s, publish=False)
    service.save(a, world.attending, s, {"accept": ["nodule_type"]})
    signed = service.sign(a, world.attending, s, publish=False)
    assert signed["ai_pending"] == [] and fake_ai.calls == 1


def test_critical_finding_notifies_once_through_the_outbox(world: World) -> None:
    a, s = world.archive, world.study
    seen: list[events.Event] = []
    stop = events.subscribe("report.critical", seen.append)
    try:
        service.create(a, world.resident, s)
        critical = {"flag": True, "note": "张力性气胸，已电话通知病房"}
        service.save(a, world.resident, s, {"critical": critical})
        service.save(a, world.resident, s, {"fields": {"findings": FINDINGS}})  # still critical
    finally:
        stop()
    assert [e.kind for e in seen] == ["report.critical"]
    assert seen[0].payload["note"] == critical["note"] and seen[0].accession_number == "ACC-R1"
    notices = events.notifications(a, world.clinician.institution_ids)
    assert [n.id for n in notices] == [seen[0].id]
    assert events.notifications(a, world.stranger.institution_ids) == []
    with pytest.raises(NotFound):
        events.acknowledge(a, seen[0].id, "far.away", world.stranger.institution_ids)
    done = events.acknowledge(a, seen[0].id, "dr.ward", world.clinician.institution_ids)
    assert done.acknowledged_by == "dr.ward" and done.acknowledged_at is not None
    assert events.notifications(a, world.clinician.institution_ids) == []
    # a durable consumer (the future HL7 ORU sender) reads each event once, in order
    service.unlock(a, world.resident, s)
    _write(world, world.attending)
    service.sign(a, world.attending, s, publish=False)
    got: list[str] = []
    assert events.consume(a, "hl7-oru", lambda e: got.append(e.kind)) == len(got) > 0
    assert got == ["report.created", "report.critical", "report.final"]
    assert events.consume(a, "hl7-oru", lambda e: got.append(e.kind)) == 0

    def broken(e: events.Event) -> None:
        raise RuntimeError("ORU peer down")

    with pytest.raises(RuntimeError):
        events.consume(a, "sms", broken)
    assert events.consume(a, "sms", lambda e: None) == 3  # nothing was skipped


def test_templates_builtin_and_institution_own(world: World) -> None:
    a = world.archive
    names = set(service.templates(a, world.resident))
    assert {"generic", "chest_ct", "chest_xray", "coronary_cta", "calcium_score"} <= names
    fields = [
        {"key": "findings", "type": "text"},
        {"key": "impression", "type": "text", "required": True},
        {"key": "liver_span_mm", "type": "number", "unit": "mm", "min": 0},
    ]
    mine = {
        "name": "abdomen_us",
        "title": {"en": "Abdominal US", "zh": "腹部超声"},
        "match": {"modalities": ["US"], "keywords": ["abdomen", "腹"]},
        "fields": fields,
    }
    with pytest.raises(Forbidden):
        service.save_template(a, world.resident, mine)
    unknown_system = [{"key": "x", "type": "category", "system": "bi_rads"}]
    for broken in ({**mine, "name": "Bad Name"}, {**mine, "fields": []},
                   {**mine, "fields": unknown_system}):  # fmt: skip
        with pytest.raises(InvalidRequest):
            service.save_template(a, world.admin, broken)
    service.save_template(a, world.admin, mine)
    assert "abdomen_us" in service.templates(a, world.resident)
    assert "abdomen_us" not in service.templates(a, world.stranger)
    r = service.create(a, world.resident, world.study, "abdomen_us")
    assert set(r["content"]["fields"]) == {"findings", "impression", "liver_span_mm"}


def test_template_suggestion_and_categories() -> None:
    t = tpl.BUILTIN_TEMPLATES
    assert tpl.suggest(t, {"CT"}, "CT CHEST (phantom)") == "chest_ct"
    assert tpl.suggest(t, {"CT"}, "CTA Coronary arteries") == "coronary_cta"
    assert tpl.suggest(t, {"CT"}, "冠状动脉钙化积分") == "calcium_score"
    assert tpl.suggest(t, {"CT"}, "Coronary calcium score") == "calcium_score"
    assert tpl.suggest(t, {"CT"}, "冠状动脉CTA") == "coronary_cta"
    assert tpl.suggest(t, {"DX"}, "胸部正位") == "chest_xray"
    assert tpl.suggest(t, {"MR"}, "Brain") == "generic"
    cac = [(0, "A0"), (1, "A1"), (99, "A1"), (99.9, "A1"), (100, "A2"), (299, "A2"),
           (300, "A3"), (4000, "A3")]  # fmt: skip
    assert [tpl.cac_drs_category(x) for x, _ in cac] == [c for _, c in cac]
    assert list(tpl.CATEGORY_SYSTEMS["lung_rads"].values) == ["0", "1", "2", "3", "4A", "4B", "4X"]
    assert list(tpl.CATEGORY_SYSTEMS["cad_rads"].values) == [
        "0", "1", "2", "3", "4A", "4B", "5", "N"]  # fmt: skip
    field = {"key": "cad", "type": "category", "system": "cad_rads"}
    assert tpl.display_value(field, "4B") == "CAD-RADS 4B"


def test_phrase_library_per_user_and_department(world: World) -> None:
    a = world.archive
    own = phrases.add(a, world.resident, "无结节", "双肺未见明确结节。", field="findings")
    with pytest.raises(Forbidden):
        phrases.add(a, world.resident, "科室", "text", shared=True)
    dept = phrases.add(a, world.admin, "随访", "建议 12 个月后低剂量 CT 复查。", shared=True)
    titles = [x["title"] for x in phrases.list_phrases(a, world.resident)]
    assert titles == ["无结节", "随访"]  # own first, then the department's
    assert [x["title"] for x in phrases.list_phrases(a, world.attending)] == ["随访"]
    assert phrases.list_phrases(a, world.stranger) == []
    assert [x["id"] for x in phrases.list_phrases(a, world.resident, "impression")] == [dept["id"]]
    with pytest.raises(NotFound):
        phrases.delete_phrase(a, world.attending, own["id"])
    with pytest.raises(Forbidden):
        phrases.delete_phrase(a, world.resident, dept["id"])
    phrases.delete_phrase(a, world.resident, own["id"])
    assert [x["title"] for x in phrases.list_phrases(a, world.resident)] == ["随访"]


def test_lock_time_is_configurable_and_reported(world: World) -> None:
    r = service.create(world.archive, world.resident, world.study)
    left = r["lock"]["expires_at"] - r["created_at"]
    assert (
        timedelta(seconds=service.LOCK_SECONDS - 60)
        < left
        <= timedelta(seconds=service.LOCK_SECONDS + 60)
    )
