"""The Go-aware tokenizer tricks: named switches that each change one thing, alone or combined.

Every trick is expressed in what HF `tokenizers` can save in tokenizer.json (a Split regex before
the byte-level mapping, plus mined idiom tokens), so a trained tokenizer loads anywhere without
gocram. "" (no tricks) is the GPT-2-style baseline: GPT-2's split regex, byte-level BPE.

The split regex is built from ordered alternatives; the first that matches at a position wins:
  [idioms] | whitespace | literals (go) | words | numbers | punctuation | other whitespace
This module imports nothing heavy: the config validates trick names through it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from gocram.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Trick:
    name: str
    summary: str
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()


# Registry order is the canonical order of a trick set's name ("go,ws,idioms").
TRICKS: dict[str, Trick] = {t.name: t for t in (
    Trick(name="go", summary="Go pre-tokenizer: identifiers keep '_' and digits, Go number literals, "
          "string/raw-string/rune literals and // comment lines as units, operator runs unsplit"),
    Trick(name="ws", summary="gofmt whitespace: newline(s)+tab indent is one pre-token, tab runs "
          "are their own pre-tokens (GPT-2 splits the last tab off the indent)"),
    Trick(name="digits", summary="numbers split into single digits (GPT-2 and 'go' group them)"),
    Trick(name="idioms", summary="frequent runs of pre-tokens within a line (if err != nil {) mined "
          "from the train split become single tokens, in slots taken from BPE's weakest merges"),
    Trick(name="prefix", summary="an identifier takes one leading '.', '(', '*', '&', '!', '[', "
          "'[]' or space: fmt.Println -> fmt .Println"),
    Trick(name="closer", summary="newline+indent also takes a closing '}', ')' or ']' "
          "(the commonest line start in gofmt code)", requires=("ws",)),
)}

# The pieces of the split regex (Oniguruma syntax, as HF tokenizers' Regex takes it).
GPT2_CONTRACTIONS = r"'s|'t|'re|'ve|'m|'ll|'d"
GPT2_SPACES = r"\s+(?!\S)|\s+"
NEWLINE_INDENT = r"[\r\n]+\t*"
CLOSER = r"[})\]]?"
TAB_RUN = r"\t+"
# Spaces (not tabs or newlines, which 'ws' owns): all but the last, which joins the next word.
SPACES = r"[^\S\r\n\t]+(?!\S)|[^\S\r\n\t]+"
COMMENT_LINE = r" ?//[^\r\n]*"
STRING = r' ?"(?:[^"\\\r\n]|\\.)*"'
RAW_STRING = r" ?`[^`\r\n]*`"
RUNE = r" ?'(?:[^'\\\r\n]|\\.)+'"
GPT2_WORD = r"\p{L}+"
GO_IDENTIFIER = r"[\p{L}_][\p{L}\p{N}_]*"
SPACE_LEAD = r" ?"
PREFIX_LEAD = r"(?:[ .(*&!\[]|\.\*|\[\]\*?)?"
GPT2_NUMBER = r" ?\p{N}+"
GO_NUMBER = (r" ?(?:0[xX][0-9a-fA-F_]+|0[bBoO][0-7_]+"
             r"|\p{N}[\p{N}_]*(?:\.\p{N}*)?(?:[eE][+-]?\p{N}+)?i?)")
SINGLE_DIGIT = r" ?\p{N}"
# A punctuation run is one pre-token, so Go's multi-character operators (:=, <-, ..., &&, !=,
# <<=) are never cut; 'go' only takes '_' out of the class (it belongs to identifiers).
GPT2_PUNCT = r" ?[^\s\p{L}\p{N}]+"
GO_PUNCT = r" ?[^\s\p{L}\p{N}_]+"


def parse_tricks(
    spec: str | list[str] | tuple[str, ...], where: str = "data.tokenizer_tricks"
) -> tuple[str, ...]:
    """Comma-separated names -> the canonical tuple (registry order); bad names or sets raise."""
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    for name in names:
        if name not in TRICKS:
            close = difflib.get_close_matches(name, list(TRICKS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown tokenizer trick {name!r}{hint}; "
                              f"choose from {', '.join(TRICKS)}")
    chosen = set(names)
    for name in chosen:
        for needed in TRICKS[name].requires:
            if needed not in chosen:
                raise ConfigError(f"{where}: trick {name!r} needs {needed!r}")
        for other in TRICKS[name].conflicts:
            if other in chosen:
                raise ConfigError(f"{where}: tricks {name!r} and {other!r} conflict")
    return tuple(t for t in TRICKS if t in chosen)


def tricks_name(tricks: tuple[str, ...]) -> str:
    """The canonical spelling of a trick set ('' for the baseline)."""
    return ",".join(tricks)


def split_pattern(tricks: tuple[str, ...], idioms_regex: str = "") -> str:
    """The split regex for a trick set; `idioms_regex` (from idioms.py) goes first when given."""
    on = set(tricks)
    go = "go" in on
    parts = [idioms_regex] if idioms_regex else []
    if "ws" in on:
        parts += [NEWLINE_INDENT + (CLOSER if "closer" in on else ""), TAB_RUN]
    parts += [COMMENT_LINE, STRING, RAW_STRING, RUNE] if go else [GPT2_CONTRACTIONS]
    lead = PREFIX_LEAD if "prefix" in on else SPACE_LEAD
    parts.append(lead + (GO_IDENTIFIER if go else GPT2_WORD))
    if "digits" in on:
        parts.append(SINGLE_DIGIT)
    else:
        parts.append(GO_NUMBER if go else GPT2_NUMBER)
    parts.append(GO_PUNCT if go else GPT2_PUNCT)
    parts.append(SPACES if "ws" in on else GPT2_SPACES)
    return "|".join(parts)
