"""Environments from the installed swebench's spec tables, its image names and log parsers (no Docker)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evals import pristine, swebench_specs
from evals.agents import GoldAgent
from evals.declared_requirements import declared_requirements
from evals.grading import Grader, runner_files, verdict
from evals.runner import EvalRunner, RunOptions
from evals.swebench_specs import SpecError, complete_environments, derive_environment, nearest_python
from evals.task import TaskError, parse_task
from sandbox.base_image import base_image_tag, ensure_base_image
from sandbox.images import ImageBuildError

RECORD = {
    "instance_id": "django__django-11099",
    "repo": "django/django",
    "version": "5.0",
    "base_commit": "abc",
    "problem_statement": "x",
    "test_patch": "diff --git a/tests/auth_tests/test_validators.py b/tests/auth_tests/test_validators.py\n",
    "FAIL_TO_PASS": ["test_ascii (auth_tests.test_validators.UsernameValidatorsTests.test_ascii)"],
}


def task(**changes):
    return parse_task({**RECORD, **changes})


def test_a_row_without_environment_is_marked_and_keeps_its_shape():
    row = task()
    assert not row.has_environment
    assert "environment" not in row.to_record()
    assert parse_task(row.to_record()).to_record() == row.to_record()


def test_django_gets_its_runner_its_parser_and_its_test_modules():
    row = task()
    complete_environments([row])
    env = row.environment
    assert row.has_environment and env.spec == "django/django 5.0"
    assert env.python == "3.11" and env.test_runner == "directives" and env.log_parser == "django/django"
    assert env.test_cmd.startswith("./tests/runtests.py --verbosity 2")
    assert env.install == ["python -m pip install -e ."]
    assert swebench_specs.test_directives(row) == ["auth_tests.test_validators"]
    script = Grader.eval_script(row)
    assert (
        "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 auth_tests.test_validators"
        in script
    )
    assert swebench_specs.START_TEST_OUTPUT in script and "junit" not in script
    # Saved with the run and read back by `eval grade`: the derived environment round-trips.
    again = parse_task(row.to_record())
    assert again.has_environment and again.environment == env


def test_a_runner_other_than_pytest_needs_a_log_parser():
    with pytest.raises(TaskError, match="needs a log_parser"):
        task(environment={"test_runner": "directives", "test_cmd": "./run"})


def test_older_specs_get_the_nearest_python_and_say_so_and_apt_packages_come_from_debian():
    env = derive_environment(task(version="1.11"))  # Python 3.5, locales from apt, then locale-gen
    assert env.python == "3.9"
    assert any("Python 3.5" in note and "3.9" in note for note in env.notes)
    assert env.apt == ["locales"]
    assert env.pip[0] == "pip"  # bullseye's own pip is too old for some editable installs
    assert env.pre_install == ["echo 'en_US UTF-8' > /etc/locale.gen", "locale-gen en_US.UTF-8"]
    assert "export LANG=en_US.UTF-8" in env.eval_commands
    assert [nearest_python(v) for v in ("3.6", "3.10", "3.11", "3.12", "3.14")] == [
        "3.9", "3.11", "3.11", "3.13", "3.13",
    ]  # fmt: skip


def test_pytest_specs_are_graded_by_junit_and_the_parser_and_sympy_runs_bin_test():
    flask = derive_environment(task(instance_id="pallets__flask-1", repo="pallets/flask", version="2.3"))
    assert flask.test_runner == "pytest" and flask.log_parser == "pallets/flask"
    assert "setuptools==70.0.0" in flask.pip and flask.test_cmd == "pytest -rA"
    sympy = derive_environment(task(instance_id="sympy__sympy-1", repo="sympy/sympy", version="1.12"))
    assert sympy.test_runner == "directives" and "bin/test" in sympy.test_cmd
    assert "mpmath==1.3.0" in sympy.pip
    # The runners' own scripts are restored like tests before grading.
    assert runner_files(sympy.test_cmd) == ["bin/test"]
    assert runner_files(derive_environment(task()).test_cmd) == ["tests/runtests.py"]


def test_published_image_names_follow_the_harness():
    assert (
        swebench_specs.published_image(task()) == "swebench/sweb.eval.x86_64.django_1776_django-11099:latest"
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"repo": "nobody/nothing"}, "do not know the repository 'nobody/nothing'"),
        ({"version": "0.0"}, "know no version '0.0' of django/django"),
        ({"version": ""}, "no repo/version"),
        ({"eval_script": "#!/bin/bash\npytest"}, "5.x's layout"),
    ],
)
def test_no_derivable_environment_is_an_error_naming_the_instance(changes, message, tmp_path):
    with pytest.raises(SpecError, match=message) as raised:
        complete_environments([task(**changes)])
    assert "django__django-11099" in str(raised.value)
    with pytest.raises(SpecError, match=message):  # before anything runs: no silent default
        EvalRunner([task(**changes)], GoldAgent(), RunOptions(output=tmp_path / "out"))
    assert not (tmp_path / "out" / "run-1").exists()


def test_the_cli_refuses_such_an_instance_with_exit_2(tmp_path):
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({**RECORD, "repo": "nobody/nothing"}) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "eval",
            "run",
            str(suite),
            "--agent",
            "gold",
            "-o",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "django__django-11099" in result.stderr and "nobody/nothing" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_swebench_the_message_names_the_extra(tmp_path):
    script = (
        "import sys; sys.modules['swebench'] = None\n"
        "from importlib import metadata\n"
        "real = metadata.version\n"
        "def version(name):\n"
        "    if name == 'swebench':\n"
        "        raise metadata.PackageNotFoundError(name)\n"
        "    return real(name)\n"
        "metadata.version = version\n"
        "from evals.swebench_specs import derive_environment, SpecError\n"
        "from evals.task import parse_task\n"
        f"row = parse_task({RECORD!r})\n"
        "try:\n    derive_environment(row)\nexcept SpecError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "mmx-agent[swebench]" in out.stdout, out.stderr


def test_declared_requirements_come_from_pyproject_or_sdist_metadata(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\n[project]\nname = "a"\ndependencies = ["click>=8"]\n'
    )
    assert declared_requirements(tmp_path / "a") == (["setuptools>=61", "wheel", "click>=8"], [])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (tmp_path / "b" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: b\nRequires-Dist: idna>=2\nRequires-Dist: pytest; extra == 'test'\n"
    )
    assert declared_requirements(tmp_path / "b") == (["setuptools", "wheel", "idna>=2"], [])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    requirements, notes = declared_requirements(tmp_path / "c")
    assert requirements == ["setuptools", "wheel"] and "not declared statically" in notes[0]


def _junit(outcomes: dict[str, str]) -> bytes:
    cases = "".join(
        f'<testcase classname="tests.test_config" name="{name}">'
        + ("" if outcome == "passed" else '<failure message="no"/>')
        + "</testcase>"
        for name, outcome in outcomes.items()
    )
    return (
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'.encode()
    )


def test_junit_and_the_log_parser_must_agree_for_a_pytest_runner():
    row = task(
        instance_id="pallets__flask-1",
        repo="pallets/flask",
        version="2.3",
        FAIL_TO_PASS=["tests/test_config.py::test_new"],
        PASS_TO_PASS=["tests/test_config.py::test_old"],
    )
    complete_environments([row])
    start, end = swebench_specs.START_TEST_OUTPUT, swebench_specs.END_TEST_OUTPUT
    honest_log = (
        f"{start}\nPASSED tests/test_config.py::test_new\nPASSED tests/test_config.py::test_old\n{end}\n"
    )
    report = _junit({"test_new": "passed", "test_old": "passed"})
    outcomes, resolved, _, notes = verdict(row, 0, report, honest_log)
    assert resolved and outcomes == dict.fromkeys(row.tests, "passed"), notes
    # The report says the new test failed; the log was made to say it passed: tampering.
    forged = _junit({"test_new": "failed", "test_old": "passed"})
    outcomes, resolved, _, notes = verdict(row, 1, forged, honest_log)
    assert not resolved and any(n.startswith("tampering") for n in notes), notes
    # No report at all: nothing passes, whatever the log says.
    _, resolved, _, notes = verdict(row, 0, None, honest_log)
    assert not resolved and any("no usable JUnit report" in n for n in notes)


def test_a_django_runner_is_read_by_the_parser_alone_and_its_exit_status_does_not_count():
    row = task(PASS_TO_PASS=["test_old (auth_tests.test_validators.UsernameValidatorsTests.test_old)"])
    complete_environments([row])
    f2p, p2p = row.FAIL_TO_PASS[0], row.PASS_TO_PASS[0]
    log = f"{swebench_specs.START_TEST_OUTPUT}\n{f2p} ... ok\n{p2p} ... ok\nother (x.Y.other) ... FAIL\n"
    outcomes, resolved, _, notes = verdict(row, 1, None, log)  # another test in the module failed
    assert resolved and outcomes == {f2p: "passed", p2p: "passed"}, notes
    outcomes, resolved, _, _ = verdict(row, 0, None, log.replace(f"{f2p} ... ok", f"{f2p} ... FAIL"))
    assert not resolved and outcomes[f2p] == "failed"


def test_apt_packages_get_a_base_image_of_their_own():
    assert base_image_tag("bookworm", ()) == base_image_tag("bookworm")
    assert base_image_tag("bookworm", ("locales",)) != base_image_tag("bookworm")
    with pytest.raises(ImageBuildError, match="not a Debian package name"):
        ensure_base_image(None, "bookworm", extra_packages=("locales; rm -rf /",))


@pytest.mark.parametrize(
    "path, restored",
    [
        ("tests/runtests.py", True),  # Django's runner, its settings and test packages
        ("tests/test_sqlite.py", True),
        ("tests/admin_views/models.py", True),
        ("sympy/core/tests/test_basic.py", True),  # sympy's tests live beside each package
        ("sympy/testing/runtests.py", True),  # and its runner in the library
        ("sympy/utilities/runtests.py", True),
        ("bin/test", False),  # not by its name: the test command names it (below)
        ("sympy/core/basic.py", False),
        ("django/db/models/query.py", False),
    ],
)
def test_the_restore_covers_each_runners_layout(path, restored):
    assert pristine.influences_tests(path, set()) is restored
    sympy = derive_environment(task(instance_id="sympy__sympy-1", repo="sympy/sympy", version="1.12"))
    assert pristine.influences_tests("bin/test", set(runner_files(sympy.test_cmd)))
