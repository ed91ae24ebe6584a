"""Every Prometheus textfile hopnhat writes is one a Prometheus user takes as it is:
``promtool check metrics`` (Debian's prometheus package; ``make test`` installs it) has
nothing to say about any of them — no gauge named like a counter, no metric without help, no
unit other than the base one. Each writer's output comes from its real renderer fed with a
realistic result (:mod:`tests.unit.reports.textfiles`), and a writer the cases miss fails."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.reports.drill import nightly
from orchestrator.reports.metrics import METRICS
from tests.helpers import promtool_says
from tests.unit.reports.textfiles import CASES, Written, writer_modules, written

WRITTEN = written()


def names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def test_every_module_that_writes_a_textfile_has_a_case() -> None:
    covered = {module for w in WRITTEN for module in w.modules}
    assert writer_modules() == covered


@pytest.mark.parametrize("each", WRITTEN, ids=[case for case, _, _ in CASES])
def test_promtool_check_metrics_has_nothing_to_say(each: Written) -> None:
    assert each.text.strip(), f"{each.case}: nothing rendered"
    assert promtool_says(each.text) == "", each.case


def test_the_check_fails_on_a_gauge_named_like_a_counter() -> None:
    """What the test above relies on: promtool flags the name verify once wrote."""
    text = ("# HELP hopnhat_verify_read_data_subset_total The rotation's length.\n"
            "# TYPE hopnhat_verify_read_data_subset_total gauge\n"
            'hopnhat_verify_read_data_subset_total{system="qlvb"} 7\n')
    assert "should not have \"_total\" suffix" in promtool_says(text)


@pytest.mark.parametrize(("case", "declared"), [
    ("verify: three repositories", METRICS), ("drill nightly", nightly.METRICS)])
def test_the_case_writes_every_gauge_its_writer_declares(case: str,
                                                         declared: dict[str, str]) -> None:
    [each] = [w for w in WRITTEN if w.case == case]
    assert names(each.text) == set(declared)


def test_each_pass_writes_its_four_gauges() -> None:
    for case, prefix in (("maintain", "hopnhat_maintain_"), ("vault pull", "hopnhat_vault_")):
        [each] = [w for w in WRITTEN if w.case == case]
        found = names(each.text)
        assert len(found) == 4 and all(n.startswith(prefix) for n in found), found
