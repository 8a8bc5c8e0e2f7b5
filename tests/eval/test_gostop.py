import pytest

from gocram.eval.gostop import BraceTracker, StopRules

PROMPT = "// F does things.\nfunc F(x map[string]interface{}) int {\n"


def feed_in_pieces(rules, text, size):
    for start in range(0, len(text), size):
        cut = rules.feed(text[start:start + size])
        if cut:
            return cut
    return None


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_function_end_ignores_braces_in_strings_runes_and_comments(size):
    body = ('\ts := "}}{"  // }\n\tr := \'}\'\n\t/* } */ raw := `}\n}`\n'
            '\tif len(s) > 0 {\n\t\treturn 1\n\t}\n\t_ = "\\"}"\n\treturn int(r)\n}\n\nfunc G() {}\n')
    cut = feed_in_pieces(StopRules(PROMPT), body, size)
    assert cut.reason == "function_end"
    assert body[:cut.end].endswith("return int(r)\n}")


def test_stop_strings_cut_before_and_win_when_earlier():
    rules = StopRules(PROMPT, stop_strings=("\nfunc",))
    cut = feed_in_pieces(rules, "\treturn 1\n\nfunc G() {\n", 2)
    assert cut.reason == "stop_string" and cut.end == len("\treturn 1\n")
    rules = StopRules(PROMPT, stop_strings=("\nfunc",))
    text = "\treturn 1\n}\nfunc G() {"
    assert feed_in_pieces(rules, text, 4).reason == "function_end"


def test_prompt_without_open_brace_stops_after_first_block():
    rules = StopRules("package main\n\n")
    text = "func A() {\n\tx := 1\n}\n\nfunc B() {}\n"
    cut = feed_in_pieces(rules, text, 5)
    assert text[:cut.end] == "func A() {\n\tx := 1\n}"


def test_without_function_end_nothing_stops():
    assert StopRules(PROMPT, function_end=False).feed("}\n}\n}") is None


def test_tracker_depth_and_states():
    t = BraceTracker()
    t.consume("func a() { /* { */ s := `{` }\nfunc b() {\n\t// {\n")
    assert t.depth == 1
