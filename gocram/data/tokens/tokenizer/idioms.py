"""Go idioms as single tokens, chosen from corpus statistics rather than a hand list.

An idiom is a run of two or more pre-tokens inside one line (`if err != nil {` is `if`, ` err`,
` !=`, ` nil`, ` {`). BPE never merges across pre-tokens, so such a run always costs several
tokens. The miner:
1. takes a sample of the train split and cuts it into two halves of interleaved blocks of
   consecutive files (files of one package are consecutive, so the halves share few packages);
2. on the *mining* half, counts every run (a line counts at most PER_FILE_CAP times per file, so
   one generated table cannot outvote the corpus) and picks runs greedily by tokens saved, in the
   BPE tokens they cost now and discounting occurrences an earlier pick already covers;
3. builds the real tokenizer for a grid of idiom counts (each idiom takes the slot of one of
   BPE's last, weakest merges) and keeps the count that encodes the *check* half in the fewest
   tokens. Measuring, not estimating, counts everything: idioms that overlap, merges lost, and
   boilerplate of the mining half's packages that the check half does not share.

At encode time the idioms become the first alternative of the split regex (a character trie, so
the regex stays fast), guarded so an idiom ends only where the base pattern would end a pre-token
(`return nil, err` does not match inside `return nil, errors`). The BPE model is switched to
`ignore_merges`, which emits a pre-token that is itself in the vocabulary as that one token.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, pre_tokenizers

from gocram.core.errors import GocramError

Run = tuple[str, ...]

MAX_PIECES = 8  # pre-tokens per idiom
MAX_CHARS = 48  # characters per idiom: a line prefix, not a whole line
MIN_COUNT = 8  # occurrences on the mining half below which a run is not a candidate
SAMPLE_BYTES = 8_000_000  # of train text mined (evenly spaced files): counts, not a full pass
PER_FILE_CAP = 4
BLOCK_FILES = 32  # consecutive files per block when halving the sample


@dataclass(frozen=True)
class Idiom:
    text: str
    pieces: Run
    gain: int  # tokens it saves on the mining half, given the idioms picked before it


def sample_texts(texts: Sequence[str], max_bytes: int = SAMPLE_BYTES) -> list[str]:
    """Evenly spaced whole files, about max_bytes in all, so every package has a say."""
    total = sum(len(t) for t in texts)
    stride = max(1, round(total / max_bytes)) if max_bytes > 0 else 1
    return list(texts[::stride])


def halves(texts: Sequence[str], block: int | None = None) -> tuple[list[str], list[str]]:
    """(mining, check): alternate blocks of consecutive files."""
    block = block or BLOCK_FILES
    mining = [t for i, t in enumerate(texts) if (i // block) % 2 == 0]
    check = [t for i, t in enumerate(texts) if (i // block) % 2 == 1]
    return mining, check


def _ends_segment(piece: str) -> bool:
    # Whitespace pre-tokens (indent, alignment) and comments are where idioms stop.
    return piece.isspace() or "\n" in piece or "\r" in piece or piece.lstrip(" ").startswith("//")


def line_segments(texts: Sequence[str], pattern: str, per_file_cap: int = PER_FILE_CAP) -> Counter[Run]:
    """How often each maximal run of in-line, non-whitespace pre-tokens occurs (capped per file)."""
    splitter = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    segments: Counter[Run] = Counter()
    for text in texts:
        in_file: Counter[Run] = Counter()
        run: list[str] = []
        for piece, _ in splitter.pre_tokenize_str(text):
            if _ends_segment(piece):
                if len(run) >= 2:
                    in_file[tuple(run)] += 1
                run = []
            else:
                run.append(piece)
        if len(run) >= 2:
            in_file[tuple(run)] += 1
        for segment, times in in_file.items():
            segments[segment] += min(times, per_file_cap) if per_file_cap > 0 else times
    return segments


def count_runs(segments: Counter[Run], min_count: int = MIN_COUNT,
               only: Collection[Run] | None = None) -> dict[Run, int]:
    """Occurrences of every run of 2..MAX_PIECES consecutive pre-tokens (up to MAX_CHARS)."""
    runs: Counter[Run] = Counter()
    for segment, weight in segments.items():
        for start in range(len(segment) - 1):
            chars = len(segment[start])
            for end in range(start + 2, min(start + MAX_PIECES, len(segment)) + 1):
                chars += len(segment[end - 1])
                if chars > MAX_CHARS:
                    break
                run = segment[start:end]
                if only is None or run in only:
                    runs[run] += weight
    return {run: n for run, n in runs.items() if n >= min_count}


def _sub_runs(run: Run) -> Counter[Run]:
    subs: Counter[Run] = Counter()
    for start in range(len(run)):
        for end in range(start + 2, len(run) + 1):
            if end - start < len(run):
                subs[run[start:end]] += 1
    return subs


class _Savings:
    """Tokens a run saves as one idiom, given the idioms chosen so far (which only lowers it)."""

    def __init__(self, runs: dict[Run, int], piece_cost: dict[str, int]):
        self.runs, self.piece_cost = runs, piece_cost
        self.chosen: set[Run] = set()
        self.covered: Counter[Run] = Counter()

    def tokens(self, run: Run) -> int:
        total, i = 0, 0
        while i < len(run):
            for end in range(len(run), i + 1, -1):  # longest chosen idiom first, like the trie
                if run[i:end] in self.chosen:
                    total, i = total + 1, end
                    break
            else:
                total, i = total + self.piece_cost[run[i]], i + 1
        return total

    def count(self, run: Run) -> int:
        return max(0, self.runs.get(run, 0) - self.covered[run])

    def gain(self, run: Run) -> int:
        return self.count(run) * (self.tokens(run) - 1)

    def choose(self, run: Run) -> None:
        count = self.count(run)
        self.chosen.add(run)
        for sub, times in _sub_runs(run).items():
            self.covered[sub] += count * times


def rank_idioms(runs: dict[Run, int], piece_cost: dict[str, int], limit: int) -> list[Idiom]:
    """Lazy greedy: each next idiom saves the most tokens given the ones before it.

    Gains only shrink as idioms are chosen, so a stale heap entry is an upper bound and the
    lazy greedy picks exactly what the plain greedy would.
    """
    savings = _Savings(runs, piece_cost)
    heap = [(-savings.gain(run), run) for run in runs]
    heapq.heapify(heap)
    picked: list[Idiom] = []
    while heap and len(picked) < limit:
        _, run = heapq.heappop(heap)
        now = savings.gain(run)
        if heap and now < -heap[0][0]:
            heapq.heappush(heap, (-now, run))  # stale: another run may be better now
            continue
        if now <= 0:
            break
        savings.choose(run)
        picked.append(Idiom(text="".join(run), pieces=run, gain=now))
    return picked


def choose_count(n: int, cost: Callable[[int], int], steps: int = 7) -> int:
    """The count in 0..n with the lowest cost: a halving grid, then two rounds of midpoints
    around the best point. Ties go to fewer idioms."""
    costs = {k: cost(k) for k in sorted({0, n, *(n >> j for j in range(1, steps))})}
    for _ in range(2):
        keys = sorted(costs)
        best = min(keys, key=lambda k: (costs[k], k))
        i = keys.index(best)
        for neighbour in keys[max(i - 1, 0):i] + keys[i + 1:i + 2]:
            mid = (best + neighbour) // 2
            if mid not in costs:
                costs[mid] = cost(mid)
    return min(costs, key=lambda k: (costs[k], k))


def _escape(ch: str) -> str:
    return "\\" + ch if ch in "\\^$.|?*+()[]{}-#" else ch


def trie_regex(idioms: Sequence[str], go_classes: bool) -> str:
    """One regex alternative matching any idiom (longest first), guarded at its end.

    The guard stops an idiom where the base pattern would not end a pre-token: after a letter,
    digit or '_', no identifier character may follow; after punctuation, no punctuation.
    """
    word = r"[\p{L}\p{N}_]"
    punct = r"[^\s\p{L}\p{N}_]" if go_classes else r"[^\s\p{L}\p{N}]"
    end_mark = ""
    trie: dict = {}
    for text in idioms:
        node = trie
        for ch in text:
            node = node.setdefault(ch, {})
        node[end_mark] = True

    def guard(last: str) -> str:
        return f"(?!{word})" if last.isalnum() or last == "_" else f"(?!{punct})"

    def emit(node: dict, last: str) -> str:
        alternatives = [_escape(ch) + emit(child, ch) for ch, child in sorted(node.items()) if ch]
        if end_mark in node:
            alternatives.append(guard(last))  # last, so a longer idiom wins
        if len(alternatives) == 1:
            return alternatives[0]
        return "(?:" + "|".join(alternatives) + ")"

    return emit(trie, "") if trie else ""


def byte_level(text: str) -> str:
    """The byte-level spelling of text (one visible character per UTF-8 byte), as in vocab."""
    mapper = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return "".join(piece for piece, _ in mapper.pre_tokenize_str(text))


def _merge_tail(model: dict, count: int) -> list[str]:
    """The vocab entries created by the last `count` merges (highest ids, in merge order)."""
    merges = model["merges"]
    by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    tail = [tok for tok, _ in by_id[len(by_id) - count:]] if count else []
    made = ["".join(m) if isinstance(m, list) else m.replace(" ", "") for m in merges[len(merges) - count:]]
    if tail != made:
        raise GocramError("BPE vocab ids do not follow merge order; cannot swap merges for idioms")
    return tail


def _with_idioms(state: dict, tail: Sequence[str], idioms: Sequence[Idiom],
                 make_pre_tokenizer: Callable[[str], pre_tokenizers.PreTokenizer],
                 go_classes: bool) -> Tokenizer:
    """The tokenizer whose last len(idioms) merges are replaced by the idioms."""
    if not idioms:
        return Tokenizer.from_str(json.dumps(state))
    state = json.loads(json.dumps(state))  # a copy: every candidate starts from the full BPE
    model, vocab = state["model"], state["model"]["vocab"]
    free_ids = sorted(vocab.pop(t) for t in tail[len(tail) - len(idioms):])
    model["merges"] = model["merges"][: len(model["merges"]) - len(idioms)]
    for idiom, idx in zip(idioms, free_ids, strict=True):
        vocab[byte_level(idiom.text)] = idx
    model["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(state))
    tok.pre_tokenizer = make_pre_tokenizer(trie_regex([i.text for i in idioms], go_classes))
    return tok


def _ranked(tok: Tokenizer, vocab: set[str], texts: Sequence[str], pattern: str,
            per_file_cap: int, limit: int) -> list[Idiom]:
    runs = count_runs(line_segments(texts, pattern, per_file_cap))
    pieces = sorted({p for run in runs for p in run})
    costs = tok.encode_batch(pieces, add_special_tokens=False) if pieces else []
    piece_cost = {p: len(enc.ids) for p, enc in zip(pieces, costs, strict=True)}
    ranked, seen = [], set(vocab)
    for idiom in rank_idioms(runs, piece_cost, limit):
        spelled = byte_level(idiom.text)
        if spelled not in seen:  # a run can spell a token BPE already has
            ranked.append(idiom)
            seen.add(spelled)
    return ranked


def add_idioms(
    tok: Tokenizer,
    texts: Sequence[str],
    pattern: str,
    make_pre_tokenizer: Callable[[str], pre_tokenizers.PreTokenizer],
    go_classes: bool,
    max_idioms: int,
    sample_bytes: int = SAMPLE_BYTES,
    per_file_cap: int = PER_FILE_CAP,
) -> tuple[Tokenizer, list[Idiom]]:
    """Replace BPE's weakest merges by mined idioms; returns the new tokenizer and the idioms.

    `pattern` is the split regex the BPE was trained with; `make_pre_tokenizer(idioms_regex)`
    gives the pre-tokenizer to encode with.
    """
    sample = sample_texts(texts, sample_bytes)
    mining, check = halves(sample)
    state = json.loads(tok.to_str())
    tail = _merge_tail(state["model"], min(max_idioms, len(state["model"]["merges"])))
    ranked = _ranked(tok, set(state["model"]["vocab"]), mining, pattern, per_file_cap, len(tail))
    if not ranked or not check:
        return tok, []

    def check_tokens(count: int) -> int:
        candidate = _with_idioms(state, tail, ranked[:count], make_pre_tokenizer, go_classes)
        return sum(len(e.ids) for e in candidate.encode_batch(check, add_special_tokens=False))

    count = choose_count(len(ranked), check_tokens)
    if not count:
        return tok, []
    # The count is settled on unseen files; the idioms themselves are best ranked on all of it.
    picked = _ranked(tok, set(state["model"]["vocab"]), sample, pattern, per_file_cap, count)
    return _with_idioms(state, tail, picked, make_pre_tokenizer, go_classes), picked
