from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from django.template import Context, Template

from quality.templatetags.quality_charts import (
    BOTTOM,
    HEIGHT,
    TOP,
    estimate,
    heatmap_chart,
    paired_bar_chart,
    pct,
    trend_chart,
)

SVG = "{http://www.w3.org/2000/svg}"


def svg_of(html: str) -> ET.Element:
    """The chart's <svg>, parsed strictly as XML (fails on malformed markup)."""
    match = re.search(
        r'<svg xmlns="http://www.w3.org/2000/svg" class="qc-svg".*?</svg>', str(html), re.S
    )
    assert match, "no <svg> in the output"
    root = ET.fromstring(match.group(0))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None
    assert title.text
    assert desc is not None
    assert desc.text
    assert set(root.get("aria-labelledby").split()) == {title.get("id"), desc.get("id")}
    return root


def figure_of(html: str) -> ET.Element:
    """The whole <figure> (SVG, caption and data table) parsed as XML."""
    return ET.fromstring(str(html))


def points(n: int):
    return [
        {
            "x": f"2025-01-{day + 1:02d}",
            "value": 0.5 + day / 50,
            "low": 0.4 + day / 50,
            "high": 0.6 + day / 50,
        }
        for day in range(n)
    ]


def test_trend_chart_without_data_says_so_in_valid_svg():
    html = trend_chart([], "Accuracy on gold", "Accuracy", chart_id="t0")

    root = svg_of(html)
    assert "No data yet." in "".join(root.itertext())
    assert root.findall(f".//{SVG}circle") == []
    figure_of(html)


def test_trend_chart_with_one_point_draws_a_dot_and_its_interval():
    html = trend_chart([{"name": "Accuracy", "points": points(1)}], "T", "Accuracy", chart_id="t1")

    root = svg_of(html)
    assert len(root.findall(f".//{SVG}circle")) == 1
    assert root.findall(f".//{SVG}polyline") == []  # no line through one point
    error_bars = [line for line in root.findall(f".//{SVG}line") if line.get("stroke-opacity")]
    assert len(error_bars) == 1
    assert "0.500 (95% CI 0.400–0.600)" in root.find(f"{SVG}desc").text
    table = figure_of(html).find(".//table")
    assert [td.text for td in table.iter("td")] == ["0.500 (95% CI 0.400–0.600)"]


def test_trend_chart_with_many_points_and_series_draws_lines_bands_and_a_table():
    kappa = points(30)
    alpha = [
        dict(p, value=None, low=None, high=None) if i == 10 else p for i, p in enumerate(points(30))
    ]
    series = [
        {"name": "Fleiss' kappa", "points": kappa},
        {"name": "Alpha <nominal>", "points": alpha},
    ]

    html = trend_chart(series, "Agreement", "Coefficient", "Period start", None, 1, "t2")

    root = svg_of(html)
    assert len(root.findall(f".//{SVG}circle")) == 30 + 29
    # One band and one line for kappa; alpha is broken in two by its missing period.
    assert len(root.findall(f".//{SVG}polygon")) == 3
    assert len(root.findall(f".//{SVG}polyline")) == 3
    x_labels = [t.text for t in root.findall(f"{SVG}text") if t.text and t.text.startswith("2025")]
    assert 2 <= len(x_labels) <= 9  # thinned, never 30 overlapping dates
    figure = figure_of(html)
    assert len(figure.findall(".//tbody/tr")) == 30
    assert "Alpha &lt;nominal&gt;" in html  # names are escaped


def test_trend_chart_keeps_values_inside_the_plot():
    wild = [{"x": "a", "value": -3.0, "low": -9.0, "high": 4.0}, {"x": "b", "value": 0.5}]

    root = svg_of(trend_chart([{"name": "k", "points": wild}], "T", "y", "x", 0, 1, "t3"))

    ys = [float(c.get("cy")) for c in root.findall(f".//{SVG}circle")]
    assert all(TOP <= y <= HEIGHT - BOTTOM for y in ys)


def test_paired_bar_chart_pairs_observed_and_expected_shares():
    rows = [
        {"label": "pos", "count": 60, "share": 0.6, "expected_share": 0.5},
        {"label": "neg", "count": 40, "share": 0.4, "expected_share": 0.5},
    ]

    html = paired_bar_chart(rows, "Class balance", chart_id="b1")

    root = svg_of(html)
    bars = root.findall(f".//{SVG}rect")
    assert len(bars) == 4
    widths = [float(bar.get("width")) for bar in bars]
    assert widths[0] > widths[1] == widths[3] > widths[2]  # 0.6 > 0.5 = 0.5 > 0.4
    assert "pos: 60% (expected 50%)" in root.find(f"{SVG}desc").text
    assert [td.text for td in figure_of(html).find(".//tbody/tr").iter("td")] == [
        "60",
        "60%",
        "50%",
    ]


def test_paired_bar_chart_without_an_expected_share_and_without_rows():
    one = svg_of(
        paired_bar_chart([{"label": "pos", "count": 3, "share": 1.0, "expected_share": None}], "T")
    )
    none = svg_of(paired_bar_chart([], "T"))

    assert len(one.findall(f".//{SVG}rect")) == 1
    assert "No labels yet." in "".join(none.itertext())


def test_heatmap_chart_shows_counts_shaded_by_row_share():
    labels = ["pos", "neg", "neu"]
    matrix = [[8, 2, 0], [1, 9, 0], [0, 0, 0]]

    html = heatmap_chart(labels, matrix, "Crowd against gold", chart_id="h1")

    root = svg_of(html)
    cells = root.findall(f".//{SVG}rect")
    assert len(cells) == 9
    assert cells[0].get("fill") != "#ffffff"  # 80% of its row: dark
    assert cells[2].get("fill") == "#ffffff"  # nothing
    texts = [t.text for t in root.findall(f".//{SVG}text")]
    assert texts.count("8") == 1
    assert texts.count("9") == 1
    rows = figure_of(html).findall(".//tbody/tr")
    assert [td.text for td in rows[0].iter("td")] == ["8", "2", "0", "10"]


@pytest.mark.parametrize(
    ("labels", "matrix"), [([], []), (["a", "b"], [[0, 0], [0, 0]]), (["a", "b"], [[1, 2]])]
)
def test_heatmap_chart_without_answers_is_an_empty_chart(labels, matrix):
    root = svg_of(heatmap_chart(labels, matrix, "T"))

    assert root.findall(f".//{SVG}rect")[0].get("fill") == "#f6f7f9"


def test_formatting_helpers():
    assert pct(0.834) == "83%"
    assert pct(None) == "—"
    assert estimate(0.8123, 0.75, 0.866) == "0.812 (95% CI 0.750–0.866)"
    assert estimate(0.8, None, 0.9) == "0.800"
    assert estimate(float("nan")) == "—"


def test_chart_tags_load_in_templates():
    template = Template(
        "{% load quality_charts %}{% trend_chart series 'Accuracy' 'Accuracy' 'Period' 0 1 'c1' %}"
        "{{ share|pct }}"
    )

    html = template.render(Context({"series": [{"name": "A", "points": points(3)}], "share": 0.5}))

    assert 'id="c1"' in html
    assert html.endswith("50%")


def test_period_labels_read_epoch_seconds_and_iso_dates():
    from quality.selectors import period_labels

    # 2026-11-20 and 2026-11-21 (UTC) as the recompute stores them, and as ISO strings
    epoch = [{"start": 1795132800.0}, {"start": 1795219200.5}]
    iso = [{"start": "2026-11-21T09:00:00+00:00"}, {"start": "2026-11-21T15:30:00+00:00"}]

    assert period_labels(epoch) == ["2026-11-20", "2026-11-21"]
    assert period_labels(iso) == ["09:00", "15:30"]
