"""A small, deterministic slice of the estate loader's fuzzer (tests/fuzz/fuzz_estate.py;
``make fuzz`` runs the whole of it for a bounded time): the same mutations of the example
estate, a fixed 50 examples, each of which must load or be refused with named problems —
never another exception, never a hang.

Every raw-YAML family and file change is in the slice (what each crashed before it was
fixed: tests/unit/estate/test_fuzz_findings.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from tests.fuzz import fuzz_estate

SLICE_FAMILIES = frozenset(fuzz_estate.RAW_FAMILIES)
SLICE_FILE_OPS = fuzz_estate.FILE_OPS


@settings(max_examples=50, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(case=fuzz_estate.estates(SLICE_FAMILIES, SLICE_FILE_OPS))
def test_a_mutated_estate_loads_or_is_refused_with_named_problems(
        case: fuzz_estate.Mutated) -> None:
    with tempfile.TemporaryDirectory(prefix="hopnhat-fuzz-") as folder:
        root = Path(folder) / "inventory"
        fuzz_estate.write_estate(case.files, root)
        failure = fuzz_estate.check(root)
        if failure is not None:
            failure.files, failure.steps = case.files, case.steps
        assert failure is None, fuzz_estate.describe(failure)
