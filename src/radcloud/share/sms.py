"""SMS to patients (pluggable providers) and QR codes of share links.

Providers implement :class:`SmsProvider` (``send(phone, text)``):

* :class:`LogProvider` (``sms_provider = "log"``, the default): writes the
  message to the log and keeps the last ones in memory, for development;
* :class:`HttpGatewayProvider` (``"http"``): POSTs
  ``{"phone": …, "text": …, "sign": …}`` as JSON to ``sms_url`` with the
  ``X-Api-Token: <sms_token>`` header; any 2xx is accepted, anything else is
  an :class:`SmsFailed`.  Most Chinese SMS platforms sit behind such a small
  relay (their own signing schemes differ), so one generic provider is enough.

Messages come from Chinese templates (``TEMPLATES``) filled with the link,
expiry and, when the link asks for one, the one-time code.
"""

from __future__ import annotations

import io
import logging
import re
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx

from radcloud.config import Settings
from radcloud.errors import InvalidRequest, RadcloudError

log = logging.getLogger(__name__)

TEMPLATES = {
    "published": "【{sign}】{name}您好，您的{exam}检查报告和影像已发布，请在{until}前打开"
    "查看：{url}（首次打开需验证手机号后四位）",
    "published_code": "【{sign}】{name}您好，您的{exam}检查报告和影像已发布，请在{until}前打开"
    "查看：{url} 验证码：{code}",
    "shared": "【{sign}】有人与您分享了一份医学影像，请在{until}前打开查看：{url}",
    "shared_code": "【{sign}】有人与您分享了一份医学影像，请在{until}前打开查看：{url} "
    "验证码：{code}",
}
_PHONE = re.compile(r"^\+?[0-9]{6,20}$")


class SmsFailed(RadcloudError):
    """The SMS provider refused the message or could not be reached."""

    http_status, dimse_status, failure_reason = 502, 0xA700, 0xA700
    title = "SMS not sent"


class SmsProvider(Protocol):
    """Sends one text message; raises :class:`SmsFailed` when it was not accepted."""

    def send(self, phone: str, text: str) -> None: ...


@dataclass(frozen=True)
class Sent:
    phone: str
    text: str


class LogProvider:
    """Development provider: logs each message (phone masked) and remembers the last 100."""

    def __init__(self) -> None:
        self.sent: deque[Sent] = deque(maxlen=100)

    def send(self, phone: str, text: str) -> None:
        self.sent.append(Sent(phone, text))
        log.info("SMS to %s: %s", mask(phone), text)


class HttpGatewayProvider:
    """POSTs the message as JSON to an HTTP SMS gateway with a token header."""

    def __init__(self, url: str, token: str | None, sign: str = "", timeout: float = 10.0) -> None:
        self.url, self.token, self.sign, self.timeout = url, token, sign, timeout

    def send(self, phone: str, text: str) -> None:
        headers = {"X-Api-Token": self.token} if self.token else {}
        try:
            r = httpx.post(self.url, json={"phone": phone, "text": text, "sign": self.sign},
                           headers=headers, timeout=self.timeout)  # fmt: skip
        except httpx.HTTPError as exc:
            raise SmsFailed(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        if not 200 <= r.status_code < 300:
            raise SmsFailed(f"SMS gateway answered {r.status_code}: {r.text[:200]}")


_log_provider = LogProvider()


def provider(settings: Settings) -> SmsProvider:
    """The provider the settings choose (the log provider is one per process)."""
    if settings.sms_provider == "http":
        if not settings.sms_url:
            raise InvalidRequest("sms_provider 'http' needs sms_url")
        return HttpGatewayProvider(settings.sms_url, settings.sms_token, settings.sms_sign)
    if settings.sms_provider == "log":
        return _log_provider
    raise InvalidRequest(f"unknown sms_provider {settings.sms_provider!r} (log, http)")


def mask(phone: str) -> str:
    """A phone number fit for logs and audit: only its last four digits."""
    digits = "".join(c for c in phone if c.isdigit())
    return "*" * max(0, len(digits) - 4) + digits[-4:]


def normalise(phone: str) -> str:
    """The first number of a PatientTelephoneNumbers value, digits (and a leading +) only."""
    first = re.split(r"[\\/,;]", phone.strip())[0]
    out = ("+" if first.strip().startswith("+") else "") + "".join(c for c in first if c.isdigit())
    if not _PHONE.match(out):
        raise InvalidRequest("not a usable phone number")
    return out


def message(kind: str, *, sign: str, url: str, until: datetime, name: str = "",
            exam: str = "", code: str | None = None) -> str:  # fmt: skip
    """The Chinese text of ``kind`` (published | shared), with the code when there is one."""
    template = TEMPLATES[kind + ("_code" if code else "")]
    return template.format(sign=sign, name=name, exam=exam or "影像", url=url, code=code or "",
                           until=until.astimezone().strftime("%Y-%m-%d %H:%M"))  # fmt: skip


def qr_svg(url: str) -> bytes:
    """The link as a QR code (SVG, error correction M) for the exam slip or a screen."""
    import qrcode
    import qrcode.image.svg

    img = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2,
                      error_correction=qrcode.constants.ERROR_CORRECT_M)  # fmt: skip
    buf = io.BytesIO()
    img.save(buf)
    return buf.getvalue()


def qr_png(url: str, box_size: int = 8) -> bytes:
    """The link as a QR code PNG (for printing where SVG is not taken)."""
    import qrcode

    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size,
                       border=2)  # fmt: skip
    qr.add_data(url)
    qr.make(fit=True)
    buf = io.BytesIO()
    qr.make_image().save(buf)
    return buf.getvalue()
