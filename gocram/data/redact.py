"""Secret and PII redaction: emails, public IP addresses, private keys, cloud/API key patterns.

Each hit is replaced by a placeholder (BigCode's convention for StarCoder: <EMAIL>, <IP_ADDRESS>,
<KEY>, plus <PRIVATE_KEY> for PEM blocks) and counted per kind. Private, loopback and
documentation IP ranges and well-known public DNS resolvers are left alone: they are not personal.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    kind: str
    placeholder: str
    pattern: re.Pattern
    # A cheap pattern (starting with a literal, so the regex engine skips ahead fast) that every
    # match contains: most files lack it and skip the slower full pattern.
    hint: re.Pattern
    only_personal_ips: bool = False


def _re(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile(pattern, flags)


_IPV6_GROUP = r"[0-9A-Fa-f]{1,4}"

# Fixed order: private keys first, so the e-mail addresses inside a key block go with it.
DETECTORS = (
    Detector("private_key", "<PRIVATE_KEY>",
             _re(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?"
                 r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", re.DOTALL),
             _re(r"PRIVATE KEY")),
    Detector("aws_access_key", "<KEY>",
             _re(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b"),
             _re(r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA)[0-9A-Z]{16}")),
    Detector("github_token", "<KEY>",
             _re(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
             _re(r"gh[pousr]_|github_pat_")),
    Detector("google_api_key", "<KEY>", _re(r"\bAIza[0-9A-Za-z_\-]{35}\b"), _re(r"AIza")),
    Detector("slack_token", "<KEY>", _re(r"\bxox[abposr]-[0-9A-Za-z\-]{10,}\b"), _re(r"xox")),
    Detector("stripe_key", "<KEY>", _re(r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}\b"), _re(r"_live_")),
    Detector("email", "<EMAIL>",
             _re(r"\b[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,24}\b"),
             _re(r"@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2}")),
    Detector("ip_address", "<IP_ADDRESS>",
             _re(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w.])"),
             _re(r"\.\d{1,3}\.\d{1,3}\."), only_personal_ips=True),
    Detector("ip_address", "<IP_ADDRESS>",
             _re(rf"(?<![\w:])(?:(?:{_IPV6_GROUP}:){{7}}{_IPV6_GROUP}"
                 rf"|(?:{_IPV6_GROUP}:){{1,6}}:(?:{_IPV6_GROUP}:){{0,5}}{_IPV6_GROUP})(?![\w:])"),
             _re(r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{1,4}"), only_personal_ips=True),
)

KINDS = tuple(dict.fromkeys(d.kind for d in DETECTORS))

PUBLIC_DNS = {
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
    "208.67.222.222", "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844",
    "2606:4700:4700::1111", "2606:4700:4700::1001",
}


def is_personal_ip(text: str) -> bool:
    """A routable public address that is not a well-known resolver."""
    if ":" in text and sum(1 for group in text.split(":") if group) < 3:
        return False  # `a::b`, `ff02::1`: too short to be anything but code or multicast
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False  # e.g. 999.1.2.3 or a version-like 1.2.3.4000: not an address at all
    return ip.is_global and str(ip) not in PUBLIC_DNS


def redact(text: str, kinds: tuple[str, ...], counts: Counter) -> str:
    """text with every secret of the given kinds replaced by its placeholder; counts per kind."""
    for det in DETECTORS:
        if det.kind not in kinds or not det.hint.search(text):
            continue

        def substitute(m: re.Match, det: Detector = det) -> str:
            if det.only_personal_ips and not is_personal_ip(m.group(0)):
                return m.group(0)
            counts[det.kind] += 1
            return det.placeholder

        text = det.pattern.sub(substitute, text)
    return text
