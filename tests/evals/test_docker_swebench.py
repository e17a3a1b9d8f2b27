"""SWE-bench-format instances (no `environment`) against the real engine: environments from swebench's
specs, the spec's own test command graded by its log parser (and JUnit for pytest), spoof patches
unresolved, and SWE-bench's published image layout (`--images swebench`) with a locally built image."""

from __future__ import annotations

import json
import time

import docker.errors
import pytest

from evals.agents import EmptyAgent, GoldAgent
from evals.cross_check import cross_check
from evals.environments import GIT_ENV, REPO_DIR
from evals.grading import Grader
from evals.regrade import regrade
from evals.runner import EvalRunner, RunOptions
from evals.sources import SourceError, materialize
from evals.swebench_specs import CONDA_ACTIVATE, complete_environments, published_image
from evals.task import parse_task
from sandbox import labels
from sandbox.docker import DockerSandbox
from tests.evals import swe_format
from tests.evals.conftest import unavailable
from tests.evals.test_docker_cheats import FORCE_PASS_HOOK

# A stand-in for miniconda's activate script: `conda activate NAME` enters the venv of that name.
FAKE_CONDA_ACTIVATE = """conda() {
  if [ "$1" = activate ] && [ -f "/opt/miniconda3/envs/$2/bin/activate" ]; then
    . "/opt/miniconda3/envs/$2/bin/activate"
  else
    echo "conda: cannot $*" >&2
    return 1
  fi
}
"""
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def instances(tmp_path_factory, base_image):
    root = tmp_path_factory.mktemp("swe-format")
    repos = root / "repos"
    repos.mkdir()
    try:
        flask, flask_tree = swe_format.flask_instance(repos)
    except SourceError as e:
        unavailable(f"cannot fetch Flask's source distribution (the host needs the package index): {e}")
    django, django_tree = swe_format.django_style_instance(repos, root)
    return {
        "repos": repos,
        "flask": flask,
        "flask_tree": flask_tree,
        "django": django,
        "django_tree": django_tree,
    }


def run(records, agent, output, **options):
    tasks = [parse_task(json.loads(json.dumps(r))) for r in records]
    started = time.monotonic()
    summary = EvalRunner(tasks, agent, RunOptions(output=output, **options)).run()
    TIMINGS[f"{output.name}"] = round(time.monotonic() - started, 1)
    return summary


def job_files(output, instance_id):
    job = output / "run-1" / instance_id
    return (
        json.loads((job / "grading.json").read_text()),
        (job / "eval.sh").read_text(),
        (job / "test_output.txt").read_text(),
    )


def test_flask_from_its_sdist_gold_resolves_the_base_does_not(instances, tmp_path):
    record = instances["flask"]
    assert "environment" not in record
    gold = run([record], GoldAgent(), tmp_path / "gold", repos_dir=instances["repos"])
    assert gold["resolved_runs_per_instance"] == {swe_format.FLASK_ID: 1}, gold
    grading, script, output = job_files(tmp_path / "gold", swe_format.FLASK_ID)
    assert "pytest -rA" in script and "--junit-xml" in script  # the spec's command, and JUnit
    assert ">>>>> Start Test Output" in output and ">>>>> End Test Output" in output
    assert any("requirements/dev.txt was read from the source tree" in n for n in grading["notes"])
    assert not any("tampering" in n for n in grading["notes"])

    empty = run([record], EmptyAgent(), tmp_path / "empty", repos_dir=instances["repos"])
    assert empty["resolved_runs_per_instance"] == {swe_format.FLASK_ID: 0} and empty["infra_failures"] == 0
    grading, _, _ = job_files(tmp_path / "empty", swe_format.FLASK_ID)
    assert grading["outcomes"][swe_format.FLASK_F2P[0]] == "failed"
    assert all(grading["outcomes"][t] == "passed" for t in swe_format.FLASK_P2P)
    # swebench's own grading of the same logs agrees with both verdicts.
    checked = cross_check(tmp_path / "gold")
    assert (checked.agree, checked.disagree) == (1, []), checked
    assert cross_check(tmp_path / "empty").disagree == []


@pytest.fixture(scope="module")
def flask_instance(instances, builder):
    task = parse_task(instances["flask"])
    complete_environments([task])
    return task, builder.instance_image(task, materialize(task, instances["repos"]))


FLASK_INIT = "src/flask/__init__.py"
FLASK_SPOOFS = {
    # Rewrites every outcome to passed; the restore deletes it.
    "root_conftest_forces_passes": {"conftest.py": FORCE_PASS_HOOK},
    # Prints the log parser's PASSED lines at exit: the log reads passed, the JUnit report does not.
    "fake_passed_lines": {
        FLASK_INIT: "\nimport atexit as _atexit\n\n\n"
        "@_atexit.register\ndef _fake():\n"
        + "".join(f"    print('PASSED {t}')\n" for t in swe_format.FLASK_F2P)
    },
    "exit_status_zero": {FLASK_INIT: "\nimport atexit as _a, os as _o\n_a.register(_o._exit, 0)\n"},
}


@pytest.mark.parametrize("spoof", sorted(FLASK_SPOOFS))
def test_spoof_patches_on_a_spec_instance_are_unresolved(spoof, flask_instance, instances, docker_client):
    task, instance = flask_instance
    tree = instances["flask_tree"]
    changes = {
        name: (tree / name).read_text() + text if (tree / name).exists() else text
        for name, text in FLASK_SPOOFS[spoof].items()
    }
    grade = Grader(timeout=300).grade(task, instance, swe_format.patch_of(tree, changes), docker_client)
    assert grade.infra_failure is None and grade.patch_successfully_applied, grade.log[-2000:]
    assert not grade.resolved, grade.notes
    if spoof == "fake_passed_lines":
        assert f"PASSED {swe_format.FLASK_F2P[0]}" in grade.log  # the parser alone would be fooled ...
        assert any("tampering" in note for note in grade.notes), grade.notes  # ... JUnit disagrees
    if spoof == "exit_status_zero":
        assert grade.test_exit_code == 0 and any("tampered" in note for note in grade.notes)


def test_a_django_style_runner_is_graded_by_the_django_log_parser(
    instances, tmp_path, builder, docker_client
):
    record = instances["django"]
    gold = run([record], GoldAgent(), tmp_path / "gold", repos_dir=instances["repos"])
    assert gold["resolved_runs_per_instance"] == {swe_format.DJANGO_ID: 1}, gold
    grading, script, output = job_files(tmp_path / "gold", swe_format.DJANGO_ID)
    assert "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 text_utils.tests" in script
    assert "junit" not in script
    assert f"{swe_format.DJANGO_F2P[0]} ... ok" in output
    assert grading["outcomes"] == {t: "passed" for t in swe_format.DJANGO_F2P + swe_format.DJANGO_P2P}
    again = regrade(tmp_path / "gold", from_logs=True)  # the saved output, read again by the parser
    assert again["resolved_runs_per_instance"] == {swe_format.DJANGO_ID: 1}, again

    empty = run([record], EmptyAgent(), tmp_path / "empty", repos_dir=instances["repos"])
    assert empty["resolved_runs_per_instance"] == {swe_format.DJANGO_ID: 0} and empty["infra_failures"] == 0
    checked = cross_check(tmp_path / "gold")  # swebench's grading agrees
    assert (checked.agree, checked.disagree) == (1, []), checked
    assert cross_check(tmp_path / "empty").disagree == []

    # A patch that rewrites the runner to report every test ok: the runner is put back first.
    task = parse_task(record)
    complete_environments([task])
    instance = builder.instance_image(task, materialize(task, instances["repos"]))
    forged = swe_format.RUNTESTS.replace(
        "result = unittest", f"print({swe_format.DJANGO_F2P[0] + ' ... ok'!r})\nresult = unittest"
    )
    patch = swe_format.patch_of(instances["django_tree"], {"tests/runtests.py": forged})
    grade = Grader(timeout=300).grade(task, instance, patch, docker_client)
    assert grade.patch_successfully_applied and not grade.resolved, grade.notes
    assert any("tests/runtests.py" in note for note in grade.notes)


@pytest.fixture(scope="module")
def published_django(instances, base_image, docker_client):
    """An image in SWE-bench's published layout, under the official name, built here from our base."""
    task = parse_task(instances["django"])
    name = published_image(task)
    repository, _, tag = name.rpartition(":")
    with DockerSandbox.create(base_image, root="/", client=docker_client, image_build=True) as box:
        box.copy_in(instances["django_tree"], REPO_DIR)
        box.write_file("/opt/miniconda3/bin/activate", FAKE_CONDA_ACTIVATE.encode())
        git = "git -c user.name=swe -c user.email=swe@localhost"
        result = box.exec(
            "set -e; python3 -m venv /opt/miniconda3/envs/testbed; "
            f"cd {REPO_DIR} && {git} init -q && {git} add -A && {git} commit -q -m base",
            env=GIT_ENV,
            timeout=300,
        )
        assert result.exit_code == 0, result.output
        conf = {
            "Cmd": ["bash"],
            "WorkingDir": REPO_DIR,
            "OpenStdin": False,
            "StdinOnce": False,
            # "env": the test-image clean-up removes it after the layers built on it.
            "Labels": {**labels.labels_for("env"), labels.OWNER: ""},
        }
        docker_client.api.commit(box.container_id, repository=repository, tag=tag, conf=conf)
    yield task, name
    try:
        docker_client.images.remove(name, force=True)
    except docker.errors.APIError:
        pass  # still a parent of the layer: the session's clean-up removes both


def test_published_images_run_and_grade_in_the_testbed_env(
    published_django, instances, tmp_path, docker_client
):
    task, name = published_django
    assert name == "swebench/sweb.eval.x86_64.django_1776_django-90001:latest"
    record = instances["django"]
    gold = run([record], GoldAgent(), tmp_path / "gold", images="swebench")
    assert gold["resolved_runs_per_instance"] == {swe_format.DJANGO_ID: 1}, gold
    grading, script, output = job_files(tmp_path / "gold", swe_format.DJANGO_ID)
    assert CONDA_ACTIVATE in script
    assert "Python in '/opt/miniconda3/envs/testbed'" in output  # the runner ran in the testbed env
    assert grading["instance_image"].startswith("mmx-agent-published:")
    assert not any(note.startswith("environment:") for note in grading["notes"])  # the official env
    # The agent's commands (each a `bash -c`) run in the env too.
    with DockerSandbox.create(grading["instance_image"], root=REPO_DIR, client=docker_client) as box:
        prefix = box.exec("python -c 'import sys; print(sys.prefix)'; git status --porcelain")
    assert prefix.output.strip() == "/opt/miniconda3/envs/testbed", prefix.output

    empty = run([record], EmptyAgent(), tmp_path / "empty", images="swebench")
    assert empty["resolved_runs_per_instance"] == {swe_format.DJANGO_ID: 0} and empty["infra_failures"] == 0


def test_a_published_image_that_cannot_be_had_is_a_build_failure_that_says_why(instances, tmp_path):
    record = {**instances["django"], "instance_id": "django__django-90002"}
    summary = run([record], GoldAgent(), tmp_path / "out", images="swebench")
    assert summary["infra_failures"] == 1
    entry = json.loads((tmp_path / "out" / "run-1" / "django__django-90002" / "report.json").read_text())
    failure = entry["django__django-90002"]["infra_failure"]
    assert failure["kind"] == "build"
    assert "swebench/sweb.eval.x86_64.django_1776_django-90002:latest" in failure["message"]
    assert "cannot be pulled" in failure["message"] and "docker load" in failure["message"]
