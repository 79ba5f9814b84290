"""Permissions and the roles that carry them by default (the system level).

Groups and users may be granted or denied single permissions on top
(:mod:`radcloud.auth.accounts` resolves the effective set); a role's defaults can
be changed by the platform admin, stored as role-level grants.
"""

from __future__ import annotations

from enum import StrEnum


class Perm(StrEnum):
    STUDY_READ = "study.read"  # search, metadata, images on screen
    STUDY_DOWNLOAD = "study.download"  # whole DICOM files out (WADO-RS instances, C-MOVE/C-GET)
    STUDY_WRITE = "study.write"  # STOW-RS, upload, C-STORE, import
    STUDY_ANNOTATE = "study.annotate"  # save measurements / key images (GSPS, KOS) to a study
    STUDY_SHARE = "study.share"  # grant a study to a user, group or institution
    STUDY_RESTRICT = "study.restrict"  # restrict a study to a care team
    BREAK_GLASS = "study.break_glass"  # emergency access to a restricted/foreign study (audited)
    USERS_MANAGE = "users.manage"  # users, groups, tokens of one's institution
    AE_MANAGE = "ae.manage"  # DICOM nodes of one's institution
    INSTITUTIONS_MANAGE = "institutions.manage"  # approve institutions; all institutions (platform)
    ROLES_MANAGE = "roles.manage"  # change what roles carry (system level)
    AUDIT_READ = "audit.read"  # search and export the audit trail
    REPORT_READ = "report.read"  # read reports (signed ones; drafts too for writers)
    REPORT_WRITE = "report.write"  # write and edit draft/preliminary reports, submit for review
    REPORT_SIGN = "report.sign"  # sign a report final, amend a signed report
    TEMPLATES_MANAGE = "templates.manage"  # report templates and department phrases


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    INSTITUTION_ADMIN = "institution_admin"
    RADIOLOGIST = "radiologist"
    RESIDENT = "resident"  # writes reports that an attending radiologist reviews and signs
    TECHNOLOGIST = "technologist"
    CLINICIAN = "clinician"
    CONSULTANT = "consultant"
    AUDITOR = "auditor"


_CLINICAL = {Perm.STUDY_READ, Perm.STUDY_DOWNLOAD, Perm.STUDY_ANNOTATE}
_REPORTING = {Perm.REPORT_READ, Perm.REPORT_WRITE}

DEFAULT_ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.PLATFORM_ADMIN: frozenset(Perm),
    Role.INSTITUTION_ADMIN: frozenset(
        {
            *_CLINICAL,
            Perm.STUDY_WRITE,
            Perm.STUDY_SHARE,
            Perm.STUDY_RESTRICT,
            Perm.BREAK_GLASS,
            Perm.USERS_MANAGE,
            Perm.AE_MANAGE,
            Perm.REPORT_READ,
            Perm.TEMPLATES_MANAGE,
        }
    ),  # fmt: skip
    Role.RADIOLOGIST: frozenset(
        {
            *_CLINICAL,
            *_REPORTING,
            Perm.REPORT_SIGN,
            Perm.STUDY_WRITE,
            Perm.STUDY_SHARE,
            Perm.STUDY_RESTRICT,
            Perm.BREAK_GLASS,
        }
    ),  # fmt: skip
    Role.RESIDENT: frozenset({*_CLINICAL, *_REPORTING}),
    Role.TECHNOLOGIST: frozenset({Perm.STUDY_READ, Perm.STUDY_WRITE}),
    Role.CLINICIAN: frozenset({*_CLINICAL, Perm.BREAK_GLASS, Perm.REPORT_READ}),
    Role.CONSULTANT: frozenset({*_CLINICAL, Perm.REPORT_READ}),
    Role.AUDITOR: frozenset({Perm.AUDIT_READ}),
}

#: What a DICOM peer may do, by its AE entry's flags.
AE_STORE = frozenset({Perm.STUDY_WRITE})
AE_QUERY = frozenset({Perm.STUDY_READ, Perm.STUDY_DOWNLOAD})


def parse_roles(text: str) -> list[Role]:
    """Role names from a comma-separated string; ValueError names an unknown one."""
    roles = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        try:
            roles.append(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {name!r} (roles: {known})") from None
    return roles


def parse_perm(name: str) -> Perm:
    try:
        return Perm(name)
    except ValueError:
        known = ", ".join(p.value for p in Perm)
        raise ValueError(f"unknown permission {name!r} (permissions: {known})") from None
