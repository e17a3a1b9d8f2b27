"""Outcomes from pytest's real JUnit XML, looked up by the node ids `pytest --collect-only` prints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from evals import junit

TEST_MODULE = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("setup fails")


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown fails")


def test_passes():
    pass


def test_fails():
    assert False


def test_setup_error(broken):
    pass


def test_teardown_error(bad_teardown):
    pass


@pytest.mark.skip(reason="no")
def test_skipped():
    pass


@pytest.mark.xfail(run=False)
def test_xfail_not_run():
    pass


@pytest.mark.xfail(reason="known")
def test_xfail_fails():
    assert False


@pytest.mark.parametrize("value", ["a  b", "it's", "x\\ny", "[br]", "a::b", "caf\\u00e9", "\\x0c"])
def test_odd_ids(value):
    assert value != "it's"


class TestGroup:
    class TestNested:
        def test_inner(self):
            pass

    def test_method(self):
        pass
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("junit")
    (root / "tests").mkdir()
    (root / "tests" / "test_sample.py").write_text(TEST_MODULE)
    (root / "pytest.ini").write_text("[pytest]\n")
    run = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "junit_family=xunit1"]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # only pytest itself: faster, same XML
    collected = subprocess.run(
        [*run, "--collect-only", "-q", "tests"], cwd=root, env=env, capture_output=True, text=True
    )
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    subprocess.run([*run, f"--junit-xml={root / 'out.xml'}", "tests"], cwd=root, env=env, capture_output=True)
    return ids, (root / "out.xml").read_bytes()


def test_every_collected_id_is_found_in_the_report(report):
    ids, xml = report
    assert len(ids) == 16
    outcomes = junit.outcomes_for(ids, xml)
    assert junit.MISSING not in outcomes.values()


def test_outcomes_keep_failures_errors_skips_and_xfails_apart(report):
    ids, xml = report
    outcomes = junit.outcomes_for(ids, xml)
    by_name = {test_id.split("::", 1)[1]: outcome for test_id, outcome in outcomes.items()}
    assert by_name["test_passes"] == junit.PASSED
    assert by_name["test_fails"] == junit.FAILED
    assert by_name["test_setup_error"] == junit.ERROR
    assert by_name["test_teardown_error"] == junit.ERROR  # passed, then errored: the worst counts
    assert by_name["test_skipped"] == junit.SKIPPED
    assert by_name["test_xfail_not_run"] == junit.XFAILED
    assert by_name["test_xfail_fails"] == junit.XFAILED
    assert by_name["test_odd_ids[it's]"] == junit.FAILED
    assert by_name["test_odd_ids[a  b]"] == junit.PASSED
    assert by_name["test_odd_ids[x\\ny]"] == junit.PASSED  # the id holds a backslash and an n
    assert by_name["TestGroup::TestNested::test_inner"] == junit.PASSED


def test_ids_the_report_lacks_are_missing_and_bad_xml_is_an_error(report):
    _, xml = report
    assert junit.outcomes_for(["tests/test_sample.py::test_gone"], xml) == {
        "tests/test_sample.py::test_gone": junit.MISSING
    }
    with pytest.raises(junit.JUnitError):
        junit.parse(b"<testsuite><testcase")


def test_addresses_follow_pytests_mangling():
    assert junit.address("tests/unit/test_a.py::TestX::test_y[1-a::b]") == (
        "tests.unit.test_a.TestX",
        "test_y[1-a::b]",
    )
    assert junit.address("test_a.py::test_b") == ("test_a", "test_b")


CUT_MODULE = """
import pytest


@pytest.mark.parametrize("message", ["Must be a string", "Must be an int"])
def test_errors(message):
    assert message != "Must be an int"


@pytest.mark.parametrize("kind", ["one thing", "other thing"])
def test_kinds(kind):
    pass
"""


def test_ids_cut_at_a_space_as_swebench_holds_them_find_their_tests(tmp_path):
    """SWE-bench's datasets hold parametrized ids cut at the first space (its log parser splits
    result lines at whitespace). pytest cannot select such an id, so its function runs, and the
    JUnit reading must give the outcome swebench's parser gives."""
    pytest.importorskip("swebench")
    from swebench.harness.log_parsers.python import parse_log_pytest

    from evals.grading import pytest_selection

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_cut.py").write_text(CUT_MODULE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "junit_family=xunit1", "-rA"]
    run = subprocess.run([*base, "tests"], cwd=tmp_path, env=env, capture_output=True, text=True)
    from_log = parse_log_pytest(run.stdout, None)
    cut = sorted(t for t in from_log if junit.is_cut(t))
    assert cut == [
        "tests/test_cut.py::test_errors[Must",  # both parametrizations cut to the same id
        "tests/test_cut.py::test_kinds[one",
        "tests/test_cut.py::test_kinds[other",
    ]
    selected, exact = pytest_selection([*cut, "tests/test_cut.py::test_kinds[one thing]"])
    assert not exact
    assert selected == [
        "tests/test_cut.py::test_errors",
        "tests/test_cut.py::test_kinds",
        "tests/test_cut.py::test_kinds[one thing]",
    ]
    xml = tmp_path / "out.xml"
    subprocess.run([*base, f"--junit-xml={xml}", "--", *selected], cwd=tmp_path, env=env, capture_output=True)
    outcomes = junit.outcomes_for(cut, xml.read_bytes())
    assert outcomes == {
        "tests/test_cut.py::test_errors[Must": junit.FAILED,  # the worst of the tests cut to it
        "tests/test_cut.py::test_kinds[one": junit.PASSED,
        "tests/test_cut.py::test_kinds[other": junit.PASSED,
    }
    # swebench's reading of the same ids (its last line per id wins): the kinds agree.
    assert (
        from_log["tests/test_cut.py::test_kinds[one"]
        == from_log["tests/test_cut.py::test_kinds[other"]
        == "PASSED"
    )
