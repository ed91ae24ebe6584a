"""What the HTML reports share: each table of words gives a language's column, any other
language is refused (exit 2), and the templates escape what they are given."""

from __future__ import annotations

import pytest

from orchestrator.actions.archive import serve
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.reports import migrate, retire
from orchestrator.reports.drill import labels as drill_labels
from orchestrator.reports.html import environment, system_title, words

TABLES = {"drill": drill_labels.WORDS, "migrate": migrate.WORDS, "retire": retire.WORDS,
          "archive": serve.WORDS}


@pytest.mark.parametrize("table", TABLES.values(), ids=TABLES.keys())
def test_each_language_is_a_column_of_the_table(table: dict[str, tuple[str, str]]) -> None:
    assert words("en", table) == {key: row[0] for key, row in table.items()}
    assert words("vi", table) == {key: row[1] for key, row in table.items()}


@pytest.mark.parametrize("lang", ["fr", "", "EN", "vi-VN"])
def test_another_language_is_refused_naming_the_choices(lang: str) -> None:
    with pytest.raises(HopnhatError, match="choose one of vi, en") as caught:
        words(lang, drill_labels.WORDS)
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_the_human_filter_writes_seconds_in_words_and_none_as_a_dash() -> None:
    template = environment().from_string("{{ a | human }}/{{ b | human }}/{{ c | human }}")
    assert template.render(a=185, b=None, c="42.14") == "3 min 05 s/—/42.1 s"


def test_what_a_report_is_given_is_escaped() -> None:
    assert environment().from_string("{{ v }}").render(v="<b>&") == "&lt;b&gt;&amp;"


@pytest.mark.parametrize(("name", "code", "title"), [
    ("Quản lý văn bản và điều hành (QLVB)", "qlvb", "Quản lý văn bản và điều hành (QLVB)"),
    ("Quản lý văn bản và điều hành (qlvb) ", "qlvb", "Quản lý văn bản và điều hành (qlvb)"),
    ("Thư điện tử công vụ", "email", "Thư điện tử công vụ (EMAIL)"),
    ("QLVB của thành phố Đà Nẵng (cũ)", "qlvbdn", "QLVB của thành phố Đà Nẵng (cũ) (QLVBDN)"),
    ("Cổng (QLVB) mới", "qlvb", "Cổng (QLVB) mới (QLVB)"),
    ("", "sso", "(SSO)"),
])
def test_a_system_is_named_with_its_code_once(name: str, code: str, title: str) -> None:
    assert system_title(name, code) == title
