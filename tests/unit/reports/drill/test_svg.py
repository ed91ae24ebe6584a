"""The pictures of a drill's report: well-formed SVG whatever the labels hold, durations in
words, and the RTO target drawn in the plot or, far beyond the drill's length, at its edge."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from orchestrator.reports.drill import svg

SVG = "{http://www.w3.org/2000/svg}"
BARS = [svg.Bar("restore <x>", 3.0, 4.5, True), svg.Bar("probes", 7.5, 0.1, False)]


def _texts(picture: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(picture).iter(f"{SVG}text")]


def test_the_pictures_are_well_formed_svg() -> None:
    for picture in (svg.timeline(BARS, 14400.0, "RTO target", "seconds"),
                    svg.timeline(BARS, 10.0, "RTO target", "seconds"),
                    svg.history([svg.Point("a", 60.0, 30.0, True),
                                 svg.Point("b", None, None, False)], 3600.0, 14400.0,
                                ("RPO", "RTO"), "target")):
        root = ET.fromstring(picture)
        assert root.tag == f"{SVG}svg"


def test_a_label_is_text_never_markup() -> None:
    texts = _texts(svg.timeline(BARS, 10.0, "RTO target", "seconds"))
    assert "restore <x>" in texts


def test_durations_are_written_in_words() -> None:
    texts = _texts(svg.timeline([svg.Bar("restore", 0.0, 7260.0, True)], 9000.0,
                                "RTO target", "seconds"))
    assert "2 h 01 min" in texts and "RTO target 2 h 30 min" in texts


def test_a_target_far_beyond_the_drill_is_drawn_at_the_edge_with_an_arrow() -> None:
    assert "RTO target 4 h 00 min →" in _texts(svg.timeline(BARS, 14400.0, "RTO target", "s"))
    assert "RTO target 10.0 s" in _texts(svg.timeline(BARS, 10.0, "RTO target", "s"))


def test_tick_steps_are_round() -> None:
    assert [svg.nice_step(span) for span in (1.0, 7.5, 60.0, 14400.0)] == [0.2, 2.0, 10.0,
                                                                            5000.0]
