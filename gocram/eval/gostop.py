"""Where a Go completion ends: brace balance (the function body closes) or a stop string.

`BraceTracker` is a tiny incremental Go lexer: it counts `{` and `}` outside comments, string,
raw-string and rune literals, so a `"}"` in a string or a brace in a comment does not end a body.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

CODE, LINE_COMMENT, BLOCK_COMMENT, STRING, RAW_STRING, RUNE = range(6)


class BraceTracker:
    """Brace depth of Go text fed in pieces; `feed` reports where the depth first returns to 0."""

    def __init__(self) -> None:
        self.depth = 0
        self.state = CODE
        self.escaped = False  # the previous character was a backslash inside a string or rune
        self.prev = ""  # the previous character (for '//', '/*' and '*/')

    def copy(self) -> BraceTracker:
        return copy.copy(self)

    def consume(self, text: str) -> None:
        """Consume all of text (a prompt), whatever closes inside it."""
        while text:
            closed = self.feed(text)
            if closed is None:
                return
            text = text[closed:]

    def feed(self, text: str) -> int | None:
        """Consume text; the index just past the `}` that closed the outermost open brace, if any."""
        for i, ch in enumerate(text):
            prev, self.prev = self.prev, ch
            state = self.state
            if state == CODE:
                if ch == "{":
                    self.depth += 1
                elif ch == "}":
                    was_open = self.depth > 0
                    self.depth -= 1
                    if was_open and self.depth == 0:
                        return i + 1
                elif ch == '"':
                    self.state = STRING
                elif ch == "`":
                    self.state = RAW_STRING
                elif ch == "'":
                    self.state = RUNE
                elif ch == "/" and prev == "/":
                    self.state = LINE_COMMENT
                elif ch == "*" and prev == "/":
                    self.state, self.prev = BLOCK_COMMENT, ""  # '/*/' does not close
            elif state == LINE_COMMENT:
                if ch == "\n":
                    self.state = CODE
            elif state == BLOCK_COMMENT:
                if ch == "/" and prev == "*":
                    self.state, self.prev = CODE, ""
            elif state == RAW_STRING:
                if ch == "`":
                    self.state = CODE
            else:  # STRING or RUNE: backslash escapes; a newline ends a broken literal
                closing = '"' if state == STRING else "'"
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == closing or ch == "\n":
                    self.state, self.prev = CODE, ""
        return None


@dataclass(frozen=True)
class Cut:
    end: int  # the completion is text[:end]
    reason: str  # "function_end" or "stop_string"


class StopRules:
    """Decide where a completion of `prompt` ends, fed with the completion text as it grows.

    With `function_end`, the completion ends just after the brace that closes every brace left
    open by the prompt (a prompt ending in `func F() int {` leaves one open). Stop strings cut
    the completion before their first occurrence. Feed each piece of text once; after a Cut,
    stop feeding.
    """

    def __init__(self, prompt: str, *, function_end: bool = True, stop_strings: tuple[str, ...] = ()):
        self.stop_strings = tuple(s for s in stop_strings if s)
        self.tracker: BraceTracker | None = None
        if function_end:
            # The lexer state after the prompt carries over (open braces, an open comment). When
            # the prompt leaves no brace open, the first block the completion opens and closes ends it.
            self.tracker = BraceTracker()
            self.tracker.consume(prompt)
            self.tracker.depth = max(self.tracker.depth, 0)
        self._seen = ""

    def feed(self, text: str) -> Cut | None:
        """Add newly decoded completion text; a Cut once the completion is complete."""
        start = len(self._seen)
        self._seen += text
        cut = None
        if self.stop_strings:
            window_start = max(0, start - max(len(s) for s in self.stop_strings) + 1)
            hits = [self._seen.find(s, window_start) for s in self.stop_strings]
            hits = [h for h in hits if h >= 0]
            if hits:
                cut = Cut(min(hits), "stop_string")
        if self.tracker is not None:
            closed = self.tracker.feed(text)
            if closed is not None:
                self.tracker = None  # done: later text is cut anyway
                if cut is None or start + closed <= cut.end:
                    cut = Cut(start + closed, "function_end")
        return cut
