"""Accounts, roles, permissions, sessions, study access and the audit trail.

:mod:`.access` holds the one permission check every interface goes through
(:class:`Principal` and the study visibility filter); :mod:`.accounts` the
institutions, users and groups; :mod:`.sessions` logins and tokens;
:mod:`.audit` the hash-chained audit trail.
"""
