"""What the estate loader's fuzzer (tests/fuzz/fuzz_estate.py, ``make fuzz``) found: each a
minimal reproducer planted in a copy of the example estate, and the behaviour the contract
asks for — ``load_estate`` raises :class:`EstateError` naming the file (and the key, where
the loader can tell it: a file that does not parse is named with its line, key "").

Every one of these crashed the loader with another exception when found (the exception and
where it was raised are in each test's docstring).
"""

from __future__ import annotations

import pytest

from orchestrator.errors import EstateError
from orchestrator.estate import load_estate
from tests.helpers import EstateCopy


def assert_refused(estate_copy: EstateCopy, rel: str, key: str) -> None:
    """``load_estate`` raises EstateError, one of its problems in ``rel`` at ``key`` (or at
    the file itself, key "", for a file that does not parse)."""
    with pytest.raises(EstateError) as caught:
        load_estate(estate_copy.root)
    problems = caught.value.problems
    assert any(f == rel and k in ("", key) for f, k, _ in problems), (
        f"no problem in {rel} at {key!r} (or the file itself) among:\n"
        + "\n".join(f"  {p!r:.300}" for p in problems))


@pytest.mark.parametrize("value", [
    pytest.param("!!int abc", id="int-tag-not-a-number"),  # ValueError: invalid literal
    pytest.param("!!int ''", id="int-tag-empty"),  # IndexError: string index out of range
    pytest.param("0x_", id="plain-hex-underscore"),  # ValueError: int() with base 16: ''
    pytest.param("0b_", id="plain-binary-underscore"),  # ValueError: int() with base 2: ''
    pytest.param("1" * 5000, id="plain-5000-digits"),  # ValueError: Exceeds the limit (4300)
])
def test_an_integer_yaml_cannot_build_is_reported(estate_copy: EstateCopy, value: str) -> None:
    """ValueError/IndexError in yaml/constructor.py construct_yaml_int."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", f"tier: {value}\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


def test_a_float_tag_on_words_is_reported(estate_copy: EstateCopy) -> None:
    """ValueError: could not convert string to float: 'abc' (construct_yaml_float)."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: !!float abc\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


def test_a_bool_tag_on_words_is_reported(estate_copy: EstateCopy) -> None:
    """KeyError: 'maybe' (construct_yaml_bool)."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: !!bool maybe\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


def test_a_timestamp_tag_on_words_is_reported(estate_copy: EstateCopy) -> None:
    """AttributeError: 'NoneType' object has no attribute 'groupdict'
    (construct_yaml_timestamp)."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: !!timestamp nonsense\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


@pytest.mark.parametrize("value", [
    pytest.param("2024-02-30", id="day-out-of-range"),  # ValueError: day is out of range
    pytest.param("!!timestamp 2024-02-30", id="tagged-day-out-of-range"),
    pytest.param("2024-01-01 25:00:00", id="hour-25"),  # ValueError: hour must be in 0..23
    pytest.param("2001-12-14 21:59:43 +99:00", id="offset-99h"),  # ValueError: offset must be …
])
def test_a_date_that_does_not_exist_is_reported(estate_copy: EstateCopy, value: str) -> None:
    """ValueError in yaml/constructor.py construct_yaml_timestamp: a plain scalar YAML
    reads as a date, of a day or time that does not exist."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", f"tier: {value}\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


def test_an_integer_too_long_to_print_is_reported_at_its_key(estate_copy: EstateCopy) -> None:
    """ValueError: Exceeds the limit (4300 digits) for integer string conversion, in
    orchestrator/estate/loader.py _message (the value quoted in the problem): YAML builds
    a hexadecimal integer of any length."""
    estate_copy.replace("systems/sso.yml", "cpu: 2,", f"cpu: 0x{'f' * 4000},")
    assert_refused(estate_copy, "systems/sso.yml", "vms[0].cpu")


def test_a_tier_too_long_to_print_is_reported_at_its_key(estate_copy: EstateCopy) -> None:
    """ValueError: Exceeds the limit (4300 digits) for integer string conversion, in
    orchestrator/estate/checks.py _check_system ("tier … has no targets")."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", f"tier: 0x{'f' * 4000}\n")
    assert_refused(estate_copy, "systems/sso.yml", "tier")


def test_a_duration_too_large_for_a_float_is_reported_at_its_key(estate_copy: EstateCopy) -> None:
    """OverflowError: int too large to convert to float, in orchestrator/estate/model.py
    parse_duration (math.isnan of the number): YAML 1.1 reads ``59:59:…:59`` as one
    base-60 integer."""
    estate_copy.replace("estate.yml", "rpo: 24h, rto: 24h, drill_interval: 90d",
                        f"rpo: {':'.join(['59'] * 200)}, rto: 24h, drill_interval: 90d")
    assert_refused(estate_copy, "estate.yml", "tiers[2].rpo")


def test_a_set_as_a_key_is_reported(estate_copy: EstateCopy) -> None:
    """TypeError: unhashable type: 'set', in orchestrator/estate/loader.py
    _construct_mapping (``set() in set()`` does not raise; ``seen.add`` does)."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: 2\n? !!set {a, b}\n: 1\n")
    assert_refused(estate_copy, "systems/sso.yml", "")


def test_a_map_tag_on_a_list_is_reported(estate_copy: EstateCopy) -> None:
    """TypeError: cannot unpack non-iterable ScalarNode object, in
    orchestrator/estate/loader.py _construct_mapping (it walks the node as a mapping's
    before PyYAML checks that it is one)."""
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: 2\nextra: !!map [1]\n")
    assert_refused(estate_copy, "systems/sso.yml", "extra")
