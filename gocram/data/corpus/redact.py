"""Secret and PII redaction: Yelp's detect-secrets for keys and passwords (as BigCode used it for
The Stack), plus patterns for what it misses, plus e-mail and public IP addresses.

Each hit is replaced by a placeholder (BigCode's convention for StarCoder: <EMAIL>,
<IP_ADDRESS>, <KEY>, <PASSWORD>, plus <PRIVATE_KEY> for PEM blocks) and counted per kind.
Private, loopback and documentation IP ranges and well-known public DNS resolvers are left
alone: they are not personal.

Order matters and is fixed: PEM blocks first (the addresses inside go with them), then the
token patterns, then detect-secrets on what is left, then e-mail and IP addresses last (a DSN's
`user:pw@host` must be seen as a password before it looks like an address). detect-secrets'
entropy plugins are not used: on Go they flag test vectors and hashes, not secrets
(docs/data.md).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Detector:
    kind: str
    placeholder: str
    pattern: re.Pattern
    # A cheap pattern (starting with a literal, so the regex engine skips ahead fast) that every
    # match contains: most files lack it and skip the slower full pattern.
    hint: re.Pattern
    group: int = 0  # the part of the match that is the secret (the rest is context, kept)
    accept: Callable[[str], bool] | None = None  # a last check on the secret itself


def _re(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile(pattern, flags)


_IPV6_GROUP = r"[0-9A-Fa-f]{1,4}"
_PEM_LABEL = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?"
# The body of a PEM block whose END line is missing: lines of base64 (as raw text, or as Go
# string pieces with `\n` escapes and `+` concatenation) and RFC 1421 headers.
_PEM_BODY = (r"(?:(?:[ \t\"'`+]|\r?\n|\\n)*(?:[A-Za-z0-9+/]{16,}={0,2}|(?:Proc-Type|DEK-Info): [^\n\"`]*)"
             r"(?:\\n)?)*")
_QUOTED_VALUE = r"[\"`']([^\"`'\s\\]{4,200})[\"`']"


def _mixed_base64(secret: str) -> bool:
    """A 40-character AWS secret key mixes cases and digits; a git SHA or a word list does not."""
    return (any(c.isupper() for c in secret) and any(c.islower() for c in secret)
            and any(c.isdigit() for c in secret))


# An environment variable's or an HTTP header's name: what a secret is read from, not a secret.
_NAME_OF_A_SECRET = re.compile(r"[A-Z][A-Z0-9_]*|X-[A-Za-z-]+")


def _not_placeholder(secret: str) -> bool:
    """`postgres://user:password@host`, `%s`, `${PASS}`, `{{.Password}}` are templates."""
    low = secret.lower()
    return not (secret[0] in "%${<*" or "{{" in secret or low.strip("x*.") == "" or
                _NAME_OF_A_SECRET.fullmatch(secret) is not None or
                low in {"password", "pass", "passwd", "pwd", "secret", "pw", "pword", "changeme"})


DETECTORS = (
    Detector("private_key", "<PRIVATE_KEY>",
             _re(rf"-----BEGIN {_PEM_LABEL}-----(?:(?:(?!-----BEGIN ).){{0,20000}}?-----END {_PEM_LABEL}-----"
                 rf"|{_PEM_BODY})", re.DOTALL),
             _re(r"PRIVATE KEY")),
    Detector("aws_access_key", "<KEY>",
             _re(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|A3T[A-Z0-9])[0-9A-Z]{16}\b"),
             _re(r"A(?:KIA|SIA|GPA|IDA|ROA|NPA|NVA|IPA|3T)[0-9A-Z]{16}")),
    Detector("aws_secret_key", "<KEY>",
             # The key may sit on the next line of a call (`NewStaticCredentials(\n id, secret, "")`).
             _re(r"(?i:aws|secret|credential|access_?key)[^;{}]{0,120}?[\"`']([A-Za-z0-9/+]{40})[\"`']"),
             _re(r"(?i:aws|secret|credential|access_?key)"), group=1, accept=_mixed_base64),
    Detector("github_token", "<KEY>",
             _re(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
             _re(r"gh[pousr]_|github_pat_")),
    Detector("gitlab_token", "<KEY>",
             _re(r"\bgl(?:pat|dt|rt|ptt|cbt|soat|ffct|agent|imt|oas)-[A-Za-z0-9_\-]{20,1024}(?![\w-])"),
             _re(r"gl[a-z]{1,5}-")),
    Detector("hf_token", "<KEY>", _re(r"\bhf_[A-Za-z0-9]{30,40}\b"), _re(r"hf_")),
    Detector("openai_key", "<KEY>",
             _re(r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}|[A-Za-z0-9]{32,})(?![\w-])"),
             _re(r"sk-")),
    Detector("google_api_key", "<KEY>", _re(r"\bAIza[0-9A-Za-z_\-]{35}\b"), _re(r"AIza")),
    Detector("slack_token", "<KEY>", _re(r"\bxox[abposr]-[0-9A-Za-z\-]{10,}\b"), _re(r"xox")),
    Detector("stripe_key", "<KEY>", _re(r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,}\b"), _re(r"_live_")),
    Detector("jwt", "<KEY>",
             _re(r"\beyJ[A-Za-z0-9_\-]{8,}={0,2}\.eyJ[A-Za-z0-9_\-]{8,}={0,2}\.[A-Za-z0-9_\-+/=]*"),
             _re(r"eyJ")),
    Detector("basic_auth", "<PASSWORD>",
             _re(r"SetBasicAuth\([^,()\n]*,\s*" + _QUOTED_VALUE + r"\s*\)"), _re(r"SetBasicAuth\("),
             group=1, accept=_not_placeholder),
    # A struct or map literal field: `Password: "..."`, `"db_password": "..."` (detect-secrets' Go
    # rules cover `=` and `:=` only).
    Detector("password", "<PASSWORD>",
             _re(r"(?i:(?:password|passwd|secret)\w*)[\"']?[ \t]*:[ \t]*" + _QUOTED_VALUE),
             _re(r"(?i:passw|secret)"), group=1, accept=_not_placeholder),
    # scheme://user:password@host, and the Go MySQL driver's user:password@tcp(host)/db.
    Detector("url_password", "<PASSWORD>",
             _re(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/@\"'`]{1,64}:([^\s@/\"'`]{1,128})@"),
             _re(r"://"), group=1, accept=_not_placeholder),
    Detector("url_password", "<PASSWORD>",
             _re(r"[\"`'][^\s:/@\"'`]{1,64}:([^\s@/\"'`]{1,128})@(?:tcp|unix|udp)\("),
             _re(r"@(?:tcp|unix|udp)\("), group=1, accept=_not_placeholder),
)

# Run after detect-secrets.
PII_DETECTORS = (
    Detector("email", "<EMAIL>",
             _re(r"\b[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2,24}\b"),
             _re(r"@(?:[A-Za-z0-9\-]+\.)+[A-Za-z]{2}")),
    Detector("ip_address", "<IP_ADDRESS>",
             _re(r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w.])"),
             _re(r"\.\d{1,3}\.\d{1,3}\."), accept=lambda s: is_personal_ip(s)),
    Detector("ip_address", "<IP_ADDRESS>",
             _re(rf"(?<![\w:])(?:(?:{_IPV6_GROUP}:){{7}}{_IPV6_GROUP}"
                 rf"|(?:{_IPV6_GROUP}:){{1,6}}:(?:{_IPV6_GROUP}:){{0,5}}{_IPV6_GROUP})(?![\w:])"),
             _re(r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{1,4}"), accept=lambda s: is_personal_ip(s)),
)

# detect-secrets plugin (class name) -> (gocram kind, placeholder). Left out: the entropy plugins
# (see the module docstring), the public-IP plugin (IPs are handled above), and the IBM Cloud,
# IBM COS, Cloudant and SoftLayer plugins, whose case-insensitive lookbehind patterns are the
# slowest to scan a whole file with and which match vendor keys that Go code rarely holds.
DETECT_SECRETS_PLUGINS = {
    "KeywordDetector": ("password", "<PASSWORD>"),
    "BasicAuthDetector": ("url_password", "<PASSWORD>"),
    "AWSKeyDetector": ("aws_secret_key", "<KEY>"),
    "GitHubTokenDetector": ("github_token", "<KEY>"),
    "GitLabTokenDetector": ("gitlab_token", "<KEY>"),
    "JwtTokenDetector": ("jwt", "<KEY>"),
    "SlackDetector": ("slack_token", "<KEY>"),
    "StripeDetector": ("stripe_key", "<KEY>"),
    "OpenAIDetector": ("openai_key", "<KEY>"),
    "ArtifactoryDetector": ("api_key", "<KEY>"),
    "AzureStorageKeyDetector": ("api_key", "<KEY>"),
    "DiscordBotTokenDetector": ("api_key", "<KEY>"),
    "MailchimpDetector": ("api_key", "<KEY>"),
    "NpmDetector": ("api_key", "<KEY>"),
    "PypiTokenDetector": ("api_key", "<KEY>"),
    "SendGridDetector": ("api_key", "<KEY>"),
    "SquareOAuthDetector": ("api_key", "<KEY>"),
    "TelegramBotTokenDetector": ("api_key", "<KEY>"),
    "TwilioKeyDetector": ("api_key", "<KEY>"),
}

KINDS = tuple(dict.fromkeys([d.kind for d in DETECTORS + PII_DETECTORS] +
                            [kind for kind, _ in DETECT_SECRETS_PLUGINS.values()]))

PUBLIC_DNS = {
    "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
    "208.67.222.222", "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844",
    "2606:4700:4700::1111", "2606:4700:4700::1001",
}
# Characters a token may be made of: a detect-secrets hit is widened to the whole token, since
# some of its plugins report only a prefix (GitLab's `glpat`, a JWT without its signature).
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.+/=")


def is_personal_ip(text: str) -> bool:
    """A routable public address that is not a well-known resolver."""
    if ":" in text and sum(1 for group in text.split(":") if group) < 3:
        return False  # `a::b`, `ff02::1`: too short to be anything but code or multicast
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False  # e.g. 999.1.2.3 or a version-like 1.2.3.4000: not an address at all
    return ip.is_global and str(ip) not in PUBLIC_DNS


def _apply(det: Detector, text: str, counts: Counter) -> str:
    def substitute(m: re.Match) -> str:
        secret = m.group(det.group)
        if det.accept is not None and not det.accept(secret):
            return m.group(0)
        counts[det.kind] += 1
        start, end = m.start(det.group) - m.start(), m.end(det.group) - m.start()
        whole = m.group(0)
        return whole[:start] + det.placeholder + whole[end:]

    return det.pattern.sub(substitute, text)


@dataclass(frozen=True)
class _Plugin:
    """One detect-secrets plugin with the patterns that gate it: a line none of them matches
    cannot hold a hit, so only the few candidate lines of a file are handed to the plugin."""

    name: str
    plugin: object
    gates: tuple[re.Pattern, ...]
    lowercase: bool = False  # gates are matched against the lower-cased text (much faster than re.I)


@lru_cache(maxsize=1)
def _detect_secrets_plugins() -> tuple[_Plugin, ...]:
    """The plugins, built once (imported late: detect-secrets is only needed when redacting)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.plugins.keyword import DENYLIST

    plugins = []
    for cls in sorted(get_mapping_from_secret_type_to_class().values(), key=lambda c: c.__name__):
        if cls.__name__ not in DETECT_SECRETS_PLUGINS:
            continue
        plugin = cls()
        if isinstance(plugin, RegexBasedDetector):
            gates = tuple(re.compile(p.pattern, p.flags | re.MULTILINE) for p in plugin.denylist)
            plugins.append(_Plugin(cls.__name__, plugin, gates))
        else:  # KeywordDetector: every one of its rules contains one of its (lower-case) keywords
            plugins.append(_Plugin(cls.__name__, plugin, (re.compile("|".join(DENYLIST)),), lowercase=True))
    return tuple(plugins)


def _filtered(secret: str, line: str) -> bool:
    """detect-secrets' own heuristic filters (BigCode's choice), plus: a keyword hit must be a
    string literal (`password := getPassword()` names a variable, not a secret)."""
    from detect_secrets.filters import heuristic

    return (heuristic.is_sequential_string(secret) or heuristic.is_potential_uuid(secret)
            or heuristic.is_likely_id_string(secret, line) or heuristic.is_templated_secret(secret)
            or heuristic.is_not_alphanumeric_string(secret)
            or heuristic.is_prefixed_with_dollar_sign(secret) or not _not_placeholder(secret))


def _candidate_lines(gates: tuple[re.Pattern, ...], text: str, starts: list[int]) -> set[int]:
    """Indices of lines where a gate matches (at most one search per line and gate)."""
    lines: set[int] = set()
    for gate in gates:
        pos = 0
        while (m := gate.search(text, pos)) is not None:
            line = bisect.bisect_right(starts, m.start()) - 1
            lines.add(line)
            if line + 1 >= len(starts):
                break
            pos = starts[line + 1]
    return lines


def _detect_secrets_spans(text: str, kinds: tuple[str, ...], path: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, placeholder) of every detect-secrets hit of an enabled kind."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    lowered = text.lower()  # may differ in length (e.g. U+0130), never in its lines
    lowered_starts = [0] + [m.end() for m in re.finditer("\n", lowered)]
    spans = []
    for p in _detect_secrets_plugins():
        kind, placeholder = DETECT_SECRETS_PLUGINS[p.name]
        if kind not in kinds:
            continue
        candidates = (_candidate_lines(p.gates, lowered, lowered_starts) if p.lowercase
                      else _candidate_lines(p.gates, text, starts))
        for index in sorted(candidates):
            end_of_line = starts[index + 1] - 1 if index + 1 < len(starts) else len(text)
            line = text[starts[index]:end_of_line]
            for secret in sorted({s.secret_value for s in p.plugin.analyze_line(
                    filename=path, line=line, line_number=index + 1) if s.secret_value}):
                if _filtered(secret, line):
                    continue
                if kind == "password" and not re.search(rf"[\"`']{re.escape(secret)}[\"`']", line):
                    continue
                for m in re.finditer(re.escape(secret), line):
                    lo, hi = m.start(), m.end()
                    while lo > 0 and line[lo - 1] in _TOKEN_CHARS and kind != "password":
                        lo -= 1
                    while hi < len(line) and line[hi] in _TOKEN_CHARS and kind != "password":
                        hi += 1
                    spans.append((starts[index] + lo, starts[index] + hi, kind, placeholder))
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int, str, str]], counts: Counter) -> str:
    """Replace non-overlapping spans, leftmost (then longest) first; deterministic."""
    out, pos = [], 0
    for start, end, kind, placeholder in sorted(spans, key=lambda s: (s[0], -s[1], s[2])):
        if start < pos:
            continue  # overlaps a span already replaced
        out.append(text[pos:start])
        out.append(placeholder)
        counts[kind] += 1
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, kinds: tuple[str, ...], counts: Counter, path: str = "file.go") -> str:
    """text with every secret of the given kinds replaced by its placeholder; counts per kind.

    `path` tells detect-secrets the file type (its keyword rules differ per language)."""
    for det in DETECTORS:
        if det.kind in kinds and det.hint.search(text):
            text = _apply(det, text, counts)
    if any(kind in kinds for kind, _ in DETECT_SECRETS_PLUGINS.values()):
        spans = _detect_secrets_spans(text, kinds, path)
        if spans:
            text = _replace_spans(text, spans, counts)
    for det in PII_DETECTORS:
        if det.kind in kinds and det.hint.search(text):
            text = _apply(det, text, counts)
    return text
