"""Patches that fake a pass are never graded resolved; the strongest of them do fool a naive grader
(tests run straight after the patch), which shows that the grader's defences do the work."""

from __future__ import annotations

import shlex

import pytest

from evals.environments import GIT_ENV, REPO_DIR
from evals.grading import Grader
from evals.junit import outcomes_for
from evals.sources import materialize
from sandbox.docker import DockerSandbox, Limits
from tests.evals import synthetic

FORCE_PASS_HOOK = (
    "import pytest\n\n\n"
    "@pytest.hookimpl(hookwrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n"
    "    outcome = yield\n"
    "    report = outcome.get_result()\n"
    "    report.outcome = 'passed'\n"
    "    report.longrepr = None\n"
)
PLUGIN = {"src/textkit/_cheat.py": FORCE_PASS_HOOK}
WORDS = synthetic.TEXTKIT_BASE["src/textkit/words.py"]
INIT = synthetic.TEXTKIT_BASE["src/textkit/__init__.py"]
TESTS = synthetic.TEXTKIT_BASE["tests/test_words.py"]
CONFTEST = synthetic.TEXTKIT_BASE["tests/conftest.py"]
PYPROJECT = synthetic.TEXTKIT_BASE["pyproject.toml"]
F2P = ["tests/test_words.py::test_slugify_collapses_separators", *synthetic.SLUG_EXAMPLES]
# Printed at exit, after pytest stops capturing, so they land in the log next to the real summary.
FAKE_LINES = (
    "import atexit\n\n\ndef _fake():\n"
    + "".join(f"    print({f'{test} PASSED'!r})\n" for test in F2P)
    + "    print('=== 5 passed in 0.01s ===')\n\n\natexit.register(_fake)\n"
)

CHEATS = {
    # A root conftest.py that the repository's .gitignore hides (/*.py) and rewrites every outcome.
    "root_conftest_forces_passes": {"conftest.py": FORCE_PASS_HOOK},
    "tests_conftest_forces_passes": {"tests/conftest.py": CONFTEST + "\n" + FORCE_PASS_HOOK},
    "sitecustomize_loads_a_plugin": {
        "src/sitecustomize.py": "import os\nos.environ['PYTEST_PLUGINS'] = 'textkit._cheat'\n",
        **PLUGIN,
    },
    "entry_point_plugin_in_dist_info": {
        "src/zz_cheat-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: zz-cheat\nVersion: 1.0\n",
        "src/zz_cheat-1.0.dist-info/entry_points.txt": "[pytest11]\ncheat = textkit._cheat\n",
        **PLUGIN,
    },
    "pyproject_addopts_loads_a_plugin": {
        "pyproject.toml": PYPROJECT + 'addopts = "-p textkit._cheat"\n',
        **PLUGIN,
    },
    "pth_hook": {
        "src/zz_cheat.pth": "import os; os.environ['PYTEST_PLUGINS'] = 'textkit._cheat'\n",
        **PLUGIN,
    },
    "fake_passed_lines": {"src/textkit/__init__.py": INIT + FAKE_LINES},
    "exit_status_zero": {
        "src/textkit/__init__.py": INIT + "import atexit, os\natexit.register(os._exit, 0)\n"
    },
    "xfail_run_false_from_conftest": {
        "tests/conftest.py": CONFTEST
        + "\n\ndef pytest_collection_modifyitems(items):\n"
        + "    for item in items:\n        item.add_marker(pytest.mark.xfail(run=False))\n"
    },
    "xfail_run_false_in_the_test_file": {
        "tests/test_words.py": TESTS.replace(
            "def test_slugify_basic",
            "import pytest\n\n\n@pytest.mark.xfail(run=False)\ndef test_slugify_basic",
        )
    },
    "xfail_from_the_library": {
        "src/textkit/words.py": WORDS.replace(
            '    """Lower-case words joined by single dashes."""\n',
            '    """Lower-case words joined by single dashes."""\n'
            "    import sys\n    if 'pytest' in sys.modules and text == 'a -- b':\n"
            "        sys.modules['pytest'].xfail('not today')\n",
        )
    },
}
# The ones a grader without the restore step would score as resolved. (sitecustomize and *.pth in
# the repository are inert in these images: Debian's own sitecustomize comes first on sys.path and
# only site directories process .pth files; they are restored all the same.)
FOOLS_A_NAIVE_GRADER = (
    "root_conftest_forces_passes",
    "tests_conftest_forces_passes",
    "entry_point_plugin_in_dist_info",
    "pyproject_addopts_loads_a_plugin",
)


@pytest.fixture(scope="module")
def textkit(synthetic_suite, builder, env_image):
    task = synthetic_suite.task("mmx-evals__textkit-1")
    return task, builder.instance_image(task, materialize(task, synthetic_suite.repos_dir))


def make_patch(synthetic_suite, tmp_path, files: dict[str, str | None]) -> str:
    """A patch against textkit's base changing `files` (None deletes), ignored files included."""
    clone = tmp_path / "clone"
    synthetic.git(tmp_path, "clone", "-q", str(synthetic_suite.repos_dir / "mmx-evals__textkit"), str(clone))
    synthetic.git(clone, "checkout", "-q", synthetic_suite.info["textkit"]["base"])
    for name, text in files.items():
        if text is None:
            (clone / name).unlink()
        else:
            synthetic.write(clone, {name: text})
    synthetic.git(clone, "add", "-A", "-f")
    return synthetic.git(clone, "diff", "--cached", "--binary", "HEAD")


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_cheating_patches_are_never_resolved(cheat, textkit, synthetic_suite, docker_client, tmp_path):
    task, instance = textkit
    patch = make_patch(synthetic_suite, tmp_path, CHEATS[cheat])
    grade = Grader(timeout=300).grade(task, instance, patch, docker_client)
    assert grade.infra_failure is None, grade.infra_failure
    assert grade.patch_successfully_applied
    assert not grade.resolved, grade.notes
    assert grade.tests_status["FAIL_TO_PASS"]["failure"], grade.outcomes
    if cheat == "exit_status_zero":
        assert grade.test_exit_code == 0 and any("tampered" in note for note in grade.notes)
    if cheat == "fake_passed_lines":
        assert f"{F2P[0]} PASSED" in grade.log  # the console says passed; the report does not
    if cheat.startswith("xfail"):
        assert grade.outcomes[F2P[0]] in ("failed", "xfailed")


@pytest.mark.parametrize("cheat", FOOLS_A_NAIVE_GRADER)
def test_the_strongest_cheats_fool_a_grader_without_the_restore(
    cheat, textkit, synthetic_suite, docker_client, tmp_path
):
    task, instance = textkit
    patch = make_patch(synthetic_suite, tmp_path, CHEATS[cheat])
    ids = " ".join(shlex.quote(t) for t in task.tests)
    with DockerSandbox.create(instance.tag, root=REPO_DIR, client=docker_client) as box:
        box.write_file("/tmp/candidate.diff", patch.encode())
        box.write_file("/tmp/test.diff", task.test_patch.encode())
        applied = box.exec("git apply /tmp/candidate.diff && git apply /tmp/test.diff", env=GIT_ENV)
        assert applied.exit_code == 0, applied.output
        run = box.exec(f"pytest -p no:cacheprovider -o junit_family=xunit1 --junit-xml=/tmp/j.xml -- {ids}")
        outcomes = outcomes_for(task.tests, box.read_file("/tmp/j.xml"))
    assert run.exit_code == 0 and set(outcomes.values()) == {"passed"}, run.output


def test_the_safest_apply_that_works_is_used_each_from_a_pristine_tree(textkit, docker_client):
    task, instance = textkit
    grader = Grader(timeout=300)
    assert grader.grade(task, instance, task.patch, docker_client).apply_method == "strict"
    # A stale context line and no blob ids: git apply (strict and 3-way) refuses, fuzz applies it.
    lines = [line for line in task.patch.splitlines(keepends=True) if not line.startswith("index ")]
    first_context = next(i for i, line in enumerate(lines) if line.startswith(" ") and i > 4)
    lines[first_context] = " # a line that is not there\n"
    fuzzy = grader.grade(task, instance, "".join(lines), docker_client)
    assert fuzzy.apply_method == "fuzzy" and fuzzy.resolved, fuzzy.log
    hopeless = "--- a/src/textkit/words.py\n+++ b/src/textkit/words.py\n@@ -1,2 +1,2 @@\n-nothing\n-like\n+this\n+here\n"
    broken = grader.grade(task, instance, hopeless, docker_client)
    assert not broken.patch_successfully_applied and not broken.resolved
    assert broken.test_exit_code is None  # no tests run on a patch that did not apply


def test_a_patch_into_git_metadata_is_refused(textkit, docker_client):
    task, instance = textkit
    patch = "diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\nnew file mode 100755\n"
    grade = Grader(timeout=300).grade(task, instance, patch, docker_client)
    assert not grade.patch_successfully_applied and "git's own files" in grade.notes[0]


@pytest.mark.parametrize(
    "kind, body, grader",
    [
        ("timeout", "    import time\n    time.sleep(120)\n", lambda: Grader(timeout=3)),
        (
            "oom",
            "    hog = bytearray(600 * 1024 * 1024)\n",
            lambda: Grader(timeout=120, limits=Limits(cpus=1.0, memory="256m", pids=256)),
        ),
    ],
)
def test_a_hanging_or_memory_hungry_test_run_is_an_infra_failure(
    kind, body, grader, textkit, synthetic_suite, docker_client, tmp_path
):
    task, instance = textkit
    docstring = '    """Lower-case words joined by single dashes."""\n'
    patch = make_patch(
        synthetic_suite, tmp_path, {"src/textkit/words.py": WORDS.replace(docstring, docstring + body)}
    )
    grade = grader().grade(task, instance, patch, docker_client)
    assert grade.infra_failure is not None and grade.infra_failure.kind == kind, (
        grade.infra_failure,
        grade.log[-2000:],
    )
    assert not grade.resolved
