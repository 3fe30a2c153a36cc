"""Hidden-state visualisation: coloured HTML and PNG, text features, units ranked by them."""

import html
import re

import numpy as np
import pytest

from rnnlab.analysis import text_features, visualize

SPAN = re.compile(
    r'<span style="background-color:#(..)(..)(..)" title="([^"]*)">(.*?)</span>', re.S
)


def test_html_has_one_span_per_character_with_the_right_colour_sign():
    text = 'if a < b & "x":\n\tpass\n'
    values = np.linspace(-1.5, 1.5, len(text))  # clipped to [-1, 1]
    values[5] = 0.0
    found = SPAN.findall(visualize.spans(text, values))
    assert len(found) == len(text)  # newlines, tabs and spaces included
    assert "".join(html.unescape(f[4]) for f in found) == text  # escaped, exactly recoverable
    for (r, g, b, title, _), v in zip(found, values):
        r, g, b = int(r, 16), int(g, 16), int(b, 16)
        assert float(title) == pytest.approx(v, abs=5e-4)
        if v < 0:
            assert r == 255 and b < 255 and g == b  # red
        elif v > 0:
            assert b == 255 and r < 255 and r == g  # blue
        else:
            assert r == g == b == 255  # white
    assert visualize.colour(-1.0) == (255, 0, 0) and visualize.colour(1.0) == (0, 0, 255)


def test_html_page_keeps_newlines_and_writes_every_unit(tmp_path):
    text = "ab\n<c>"
    path = visualize.write_html(
        tmp_path / "units.html", text, {"unit 3": np.ones(6), "unit <7>": -np.ones(6)}
    )
    page = open(path, encoding="utf-8").read()
    assert "white-space: pre-wrap" in page and "unit &lt;7&gt;" in page
    assert page.count(">\n</span>") == 2 and page.count("&lt;c&gt;") == 0  # one span each
    with pytest.raises(ValueError, match="one per character"):
        visualize.spans(text, np.zeros(5))


def test_png_is_written(tmp_path):
    text = "def f(x):\n    return x  # a comment that is long enough to wrap\n"
    path = visualize.write_png(
        tmp_path / "unit.png", text, np.sin(np.arange(len(text))), columns=30, title="unit 0"
    )
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert visualize.layout("ab\ncd", columns=80) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


def test_python_features_quotes_comments_brackets_and_columns():
    src = 'x = f("a#b", [1, (2)])  # c "q"\ns = """\n(\n"""\n'
    f = text_features.features(src, "python")
    at = lambda name, sub, start=0: f[name][src.index(sub, start)]  # noqa: E731
    assert at("in_quote", '"a') == 1 and at("in_quote", "#b") == 1 and at("in_quote", "=") == 0
    assert at("in_comment", "#b") == 0  # a # inside a string is not a comment
    assert at("in_comment", "# c") == 1 and at("in_quote", '"q"') == 0  # nor a quote in one
    assert at("in_comment", "\n") == 0
    assert at("bracket_depth", '"a') == 1 and at("bracket_depth", "2") == 3
    assert at("bracket_depth", ")]") == 3 and at("bracket_depth", "  #") == 0
    assert at("in_quote", "(\n") == 1 and at("bracket_depth", "(\n") == 0  # in a """ string
    np.testing.assert_array_equal(f["line_position"][:3], [0, 1, 2])
    assert at("line_position", "s =") == 0
    assert at("line_position", "\n") == src.index("\n")  # a newline ends its line


def test_prose_quotes_ignore_apostrophes():
    text = 'He said "don\'t go" and left.'
    f = text_features.features(text, "prose")
    inside = f["in_quote"].astype(bool)
    assert "".join(np.array(list(text))[inside]) == '"don\'t go"'
    assert not f["in_comment"].any()


def test_rank_units_finds_the_unit_that_tracks_a_feature():
    text = 'a = "hello world" + b  # x\n' * 20
    feats = text_features.features(text)
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(len(text), 6)) * 0.3
    acts[:, 4] += np.where(feats["in_quote"] > 0, 0.8, -0.8)  # a quote unit, negated sign
    acts[:, 2] = -feats["line_position"] / 30.0  # a line-position unit
    acts[:, 5] = 0.5  # constant: scores 0, not nan
    ranked = text_features.rank_units(acts, feats, top=3)
    assert ranked["in_quote"][0].unit == 4 and ranked["in_quote"][0].correlation > 0.8
    assert ranked["line_position"][0] == (2, pytest.approx(-1.0))
    r = text_features.correlations(acts, feats["in_quote"])
    assert r[5] == 0.0 and np.all(np.isfinite(r))
