"""C-FIND/C-MOVE/C-GET identifiers ⇄ the query engine's filters and DICOM JSON results.

Matching values are passed on as DICOM match strings (``\\`` lists, ``-``
ranges, ``*``/``?`` wildcards) for :mod:`radcloud.archive.query` to interpret;
sequence keys take no part in matching (PS3.4 C.2.2.1.3 sequence matching
is optional) but are still answered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from radcloud.archive.query import UNIQUE_KEY, Level
from radcloud.errors import MissingAttribute

QR_LEVEL = 0x00080052
CHARSET = 0x00080005
RETRIEVE_AE = 0x00080054
#: Keys that never take part in matching.
_NOT_MATCHED = {QR_LEVEL, CHARSET, RETRIEVE_AE, 0x00080056}  # + InstanceAvailability
#: The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).


@dataclass
class Request:
    """A Q/R identifier, translated."""

    level: Level
    filters: dict[str, str] = field(default_factory=dict)
    keys: list[DataElement] = field(default_factory=list)  # requested, in order

    def values(self, keyword: str) -> list[str]:
        """The ``\\``-separated values of a matching key ([] when absent or universal)."""
        return [v for v in self.filters.get(keyword, "").split("\\") if v.strip()]


def match_string(elem: DataElement) -> str:
    """A data element's value as a DICOM match string ('' = universal matching)."""
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(match_string_item(v) for v in value)
    return match_string_item(value)


def match_string_item(value: Any) -> str:
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return ""
    return str(value).strip()


def parse_identifier(ds: Dataset) -> Request:
    """Level, matching keys and requested keys of a Q/R identifier."""
    if QR_LEVEL not in ds or not str(ds.get("QueryRetrieveLevel", "")).strip():
        raise MissingAttribute("the identifier has no QueryRetrieveLevel (0008,0052)")
    try:
        level = Level.parse(str(ds.QueryRetrieveLevel))
    except Exception as exc:  # BadQuery: report as identifier / SOP class mismatch
        raise MissingAttribute(str(exc)) from exc
    req = Request(level)
    for elem in ds:  # decodes raw elements with the identifier's character set
        tag = int(elem.tag)
        if elem.tag.is_private or elem.tag.element == 0 or tag in (QR_LEVEL, CHARSET):
            continue
        req.keys.append(elem)
        keyword = keyword_for_tag(tag)
        if elem.VR == "SQ" or tag in _NOT_MATCHED or not keyword:
            continue
        req.filters[keyword] = match_string(elem)
    return req


def _without_bulk(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if "BulkDataURI" not in v}


def _non_ascii(values: Iterable[Any]) -> bool:
    for v in values:
        if isinstance(v, str | PersonName) and not str(v).isascii():
            return True
        if isinstance(v, MultiValue | list) and _non_ascii(v):
            return True
        if isinstance(v, Dataset) and _non_ascii(e.value for e in v):
            return True
    return False


def response(
    req: Request, item: dict[str, Any], ae_title: str, *, retrieve_ae: bool = True
) -> Dataset:
    """The C-FIND response identifier for one match: exactly the requested keys."""
    match = Dataset.from_json(_without_bulk(item))
    rsp = Dataset()
    for elem in req.keys:
        if elem.tag in match:
            rsp.add(match[elem.tag])
        else:
            rsp.add_new(elem.tag, elem.VR, None)
    unique = UNIQUE_KEY[req.level]
    if unique not in rsp and unique in match:
        rsp[unique] = match[unique]
    rsp.QueryRetrieveLevel = req.level.value
    if retrieve_ae:
        rsp.RetrieveAETitle = ae_title
    if _non_ascii(e.value for e in rsp):
        rsp.SpecificCharacterSet = "ISO_IR 192"
    return rsp
