from __future__ import annotations

import re

import pytest
from django.template import Context, Template
from django.utils.safestring import SafeString

from annotation.markdown import render_markdown


def test_render_markdown_formats_common_markdown():
    html = render_markdown("Pick the **tone**:\n\n- `1` positive\n- `2` negative")

    assert isinstance(html, SafeString)
    assert "<strong>tone</strong>" in html
    assert "<li><code>1</code> positive</li>" in html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert('x')</script>",
        "Look <img src=x onerror=alert(1)>",
        '<div onclick="alert(1)">\nblock html\n</div>',
        "<iframe src=https://evil.example></iframe>",
        "<a href='javascript:alert(1)'>raw link</a>",
    ],
)
def test_render_markdown_never_lets_raw_html_through(source):
    html = render_markdown(source)

    assert re.findall(r"<(\w+)", html) == ["p"]  # the only element is the paragraph
    assert "&lt;" in html  # the raw HTML is shown as text


@pytest.mark.parametrize(
    "source", ["[click](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[d](data:text/html,x)"]
)
def test_render_markdown_strips_dangerous_link_schemes(source):
    html = render_markdown(source)

    assert "href" not in html
    assert "javascript" not in html.lower()
    assert "data:" not in html


def test_render_markdown_links_get_noopener_noreferrer():
    html = render_markdown("See [the guide](https://example.org/guide) or <https://example.org>.")

    assert html.count('rel="noopener noreferrer"') == 2
    assert 'href="https://example.org/guide"' in html


def test_render_markdown_escapes_text_that_looks_like_html():
    assert render_markdown("a < b & c") == "<p>a &lt; b &amp; c</p>"


def test_markdown_filter_renders_project_instructions():
    template = Template("{% load annotation_tags %}{{ text|markdown }}")

    html = template.render(Context({"text": "**Bold** <script>x()</script>"}))

    assert html == "<p><strong>Bold</strong> &lt;script&gt;x()&lt;/script&gt;</p>"
