"""Top-level Go functions with doc comments, split into (doc + signature) -> body.

A light scanner, not a parser: a candidate is a line starting with `func ` at brace depth 0
outside comments and literals (BraceTracker), directly under `//` doc lines; the signature
runs to the first line ending in `{` with balanced parentheses; the body runs to the brace
that closes it. One-line functions and signatures ending in `struct {`/`interface {` are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from gocram.eval.gostop import CODE, BraceTracker

MAX_SIGNATURE_LINES = 8


@dataclass(frozen=True)
class GoFunction:
    source: str  # where the file came from (repo/path)
    name: str
    doc: str  # the `//` lines above the function, newline-terminated
    signature: str  # from `func` to the opening `{` and its newline
    body: str  # everything after the signature up to and including the closing `}`
    prefix: str  # file text before the doc comment
    suffix: str  # file text after the closing `}`

    @property
    def prompt(self) -> str:
        return self.doc + self.signature

    def with_body(self, body: str) -> str:
        """The whole file with this function's body replaced."""
        return self.prefix + self.doc + self.signature + body + self.suffix


def _line_starts(text: str) -> list[tuple[int, int, int]]:
    """(offset, lexer state, brace depth) at the start of every line."""
    tracker = BraceTracker()
    starts, offset = [], 0
    for line in text.splitlines(keepends=True):
        starts.append((offset, tracker.state, tracker.depth))
        tracker.consume(line)
        offset += len(line)
    return starts


def _function_name(signature: str) -> str:
    head = signature[len("func"):].lstrip()
    if head.startswith("("):  # a method: skip the receiver
        depth = 0
        for i, ch in enumerate(head):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                head = head[i + 1:].lstrip()
                break
    name = ""
    for ch in head:
        if not (ch.isalnum() or ch == "_"):
            break
        name += ch
    return name


def extract_functions(text: str, source: str = "") -> list[GoFunction]:
    lines = text.splitlines(keepends=True)
    starts = _line_starts(text)
    found = []
    for i, line in enumerate(lines):
        offset, state, depth = starts[i]
        if not line.startswith("func ") or state != CODE or depth != 0:
            continue
        doc_start = i
        while doc_start > 0 and lines[doc_start - 1].startswith("//"):
            doc_start -= 1
        if doc_start == i:
            continue
        doc = "".join(lines[doc_start:i])
        if doc.lstrip("/ \t").startswith("go:") or "+build" in doc:  # directives, not docs
            continue
        signature, end_line = "", None
        for j in range(i, min(i + MAX_SIGNATURE_LINES, len(lines))):
            if j > i and (not lines[j].strip() or lines[j].startswith(("func ", "//"))):
                break  # a one-line function, or no body: the signature never opened one
            signature += lines[j]
            stripped = signature.rstrip()
            if stripped.endswith("{") and signature.count("(") == signature.count(")"):
                end_line = j
                break
        if end_line is None or not signature.endswith("\n"):
            continue
        if signature.rstrip()[:-1].rstrip().endswith(("struct", "interface")):
            continue
        body_start = offset + len(signature)
        tracker = BraceTracker()
        tracker.depth = 1
        closed = tracker.feed(text[body_start:])
        if closed is None:
            continue
        body = text[body_start:body_start + closed]
        if not body.strip("}\n\t ") or not body.endswith("\n}"):
            continue  # empty bodies, or a closing brace not at column 0
        found.append(GoFunction(
            source=source, name=_function_name(signature), doc=doc, signature=signature, body=body,
            prefix=text[:starts[doc_start][0]], suffix=text[body_start + closed:]))
    return found
