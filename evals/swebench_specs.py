"""Environments, test commands and log parsers read from the installed `swebench` package (4.x).

A SWE-bench instance names its `repo` and `version`; swebench's MAP_REPO_VERSION_TO_SPECS says
which Python, packages, install command, test command and eval commands the official harness
uses for it, and MAP_REPO_TO_PARSER which parser reads the test output. Here that spec becomes
our offline recipe (evals/task.py's Environment): a Debian base chosen by the nearest Python we
have, a wheelhouse built on the host, Debian packages for the spec's apt installs. What cannot be
had offline (requirements files the harness downloads from GitHub, an exact Python we have no
Debian suite for) is said in the environment's notes, instance by instance.

swebench 5.x dropped the spec tables (each instance brings a Dockerfile and an eval script from a
task repository): with 5.x installed, or for an instance in that layout, the derivation stops with
a message that says so. Nothing of swebench is copied here: every table and parser is imported
from the installed package, lazily, so the core runs without it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from evals.task import PYTHON_SUITES, Environment, Task

EXTRA_HINT = "install the extra: pip install 'mmx-agent[swebench]' (swebench==4.1.0)"
PUBLISHED_NAMESPACE = "swebench"  # Docker Hub namespace of SWE-bench's published instance images
PUBLISHED_ARCH = "x86_64"
PUBLISHED_TAG = "latest"
CONDA_ACTIVATE = "source /opt/miniconda3/bin/activate && conda activate testbed"
START_TEST_OUTPUT = ">>>>> Start Test Output"  # the harness's markers, so its tools can read our logs
END_TEST_OUTPUT = ">>>>> End Test Output"
PYTEST_COMMANDS = ("pytest", "py.test")
# Fields of an instance that brings its own environment in swebench 5.x's task layout.
OWN_ENVIRONMENT_FIELDS = ("dockerfile", "env_dockerfile", "eval_script", "eval_sh", "image_name")


class SpecError(ValueError):
    """No environment can be derived for an instance; the message names it and says why."""


def _tables() -> tuple[dict[str, Any], dict[str, Any]]:
    """(MAP_REPO_VERSION_TO_SPECS, MAP_REPO_TO_PARSER) from the installed swebench."""
    try:
        installed = metadata.version("swebench")
    except metadata.PackageNotFoundError:
        raise SpecError(f"the swebench package is not installed; {EXTRA_HINT}") from None
    try:
        from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
        from swebench.harness.log_parsers import MAP_REPO_TO_PARSER
    except ImportError as e:
        raise SpecError(
            f"swebench {installed} has no spec tables (swebench.harness.constants."
            f"MAP_REPO_VERSION_TO_SPECS: {e}); they are in 4.x: {EXTRA_HINT}"
        ) from None
    return MAP_REPO_VERSION_TO_SPECS, MAP_REPO_TO_PARSER


def nearest_python(wanted: str) -> str:
    """The Python we have a Debian suite for that is closest to `wanted`; ties go to the newer one."""
    try:
        major, minor = (int(part) for part in wanted.split(".")[:2])
    except ValueError:
        raise SpecError(f"the spec's Python {wanted!r} is not a version") from None
    available = sorted(PYTHON_SUITES, key=lambda v: tuple(int(p) for p in v.split(".")))
    return min(reversed(available), key=lambda v: abs(int(v.split(".")[1]) - minor) + 100 * abs(3 - major))


def _conda_to_pip(package: str) -> str:
    """A conda spec ("numpy=1.19") as a pip requirement ("numpy==1.19")."""
    return re.sub(r"(?<![=<>!~])=(?!=)", "==", package, count=1)


def _command_word(command: str) -> str:
    """The program a shell command runs, after leading VAR=value assignments."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)] or [""]
    if words[0] in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
        return "pytest"
    return words[0].rsplit("/", 1)[-1]


def _split_apt(commands: Iterable[str]) -> tuple[list[str], list[str]]:
    """(Debian packages the commands apt-get install, the commands left once those are taken out)."""
    packages: list[str] = []
    rest: list[str] = []
    for command in commands:
        kept = []
        for part in re.split(r"\s*&&\s*", command):
            words = part.split()
            if words[:1] == ["apt-get"] or words[:1] == ["apt"]:
                if "install" in words:
                    after = words[words.index("install") + 1 :]
                    packages += [w for w in after if not w.startswith("-")]
                continue  # update, install: the base image's build does both, from Debian
            kept.append(part)
        if kept:
            rest.append(" && ".join(kept))
    return list(dict.fromkeys(packages)), rest


def spec_for(task: Task) -> dict[str, Any]:
    """The spec swebench's harness uses for this instance (a SpecError naming it when there is none)."""
    where = task.instance_id
    own = [name for name in OWN_ENVIRONMENT_FIELDS if task.extra.get(name)]
    if own:
        raise SpecError(
            f"{where}: brings its own environment in swebench 5.x's layout ({', '.join(own)}), which is "
            "not supported: give it an `environment` field, or use a dataset with repo/version"
        )
    specs, _ = _tables()
    if not task.repo or not task.version:
        raise SpecError(
            f"{where}: has no `environment` and no repo/version to derive one from swebench's specs"
        )
    if task.repo not in specs:
        raise SpecError(f"{where}: swebench's specs do not know the repository {task.repo!r}")
    versions = specs[task.repo]
    if task.version not in versions:
        known = ", ".join(sorted(versions, key=str)[:30])
        raise SpecError(
            f"{where}: swebench's specs know no version {task.version!r} of {task.repo} (known: {known})"
        )
    return versions[task.version]


def derive_environment(task: Task) -> Environment:
    """The offline recipe for the environment the official harness would build for this instance."""
    where = task.instance_id
    spec = spec_for(task)
    _, parsers = _tables()
    if "python" not in spec:
        raise SpecError(
            f"{where}: {task.repo} {task.version} is not a Python spec; only Python repositories "
            "translate to our Debian + Python images"
        )
    notes: list[str] = []
    python = nearest_python(str(spec["python"]))
    if python != str(spec["python"]):
        notes.append(f"the spec asks for Python {spec['python']}; the nearest available, {python}, is used")
    pip: list[str] = []
    packages = str(spec.get("packages") or "")
    if packages == "environment.yml":
        notes.append(
            "the spec creates the conda env from the repository's environment.yml, which the harness "
            "downloads from GitHub: conda is not used offline, so the spec's pip packages and the "
            "repository's own declared dependencies are installed instead"
        )
    elif packages and packages != "requirements.txt":  # that one is read from the source tree
        pip += [_conda_to_pip(p) for p in packages.split()]
    pip += [str(p) for p in spec.get("pip_packages") or []]
    test_cmds = spec["test_cmd"] if isinstance(spec["test_cmd"], list) else [spec["test_cmd"]]
    test_cmd = test_cmds[-1]
    eval_commands = [*test_cmds[:-1], *(spec.get("eval_commands") or [])]
    runner = "pytest" if _command_word(test_cmd) in PYTEST_COMMANDS else "directives"
    names = {re.split(r"[<>=!~\[; ]", p, maxsplit=1)[0].lower() for p in pip}
    if runner == "pytest" and "pytest" not in names and packages != "requirements.txt":
        pip.append("pytest")
        notes.append(
            "pytest is not in the spec's package list (its requirements file brings it): the newest is used"
        )
    if python == "3.9" and "pip" not in names:
        pip.insert(0, "pip")
        notes.append(
            "bullseye's pip 20.3 cannot install every project in editable mode: the newest pip is used"
        )
    if spec.get("execute_test_as_nonroot"):
        notes.append("the spec runs the tests as a user other than root; here they run as root")
    log_parser = task.repo if task.repo in parsers else ""
    if runner == "directives" and not log_parser:
        raise SpecError(
            f"{where}: swebench has no log parser for {task.repo}, whose test command is not pytest"
        )
    apt, pre_install = _split_apt(spec.get("pre_install") or [])
    apt += [p for p in spec.get("apt-pkgs") or [] if p not in apt]
    install = [spec["install"]] if spec.get("install") else []
    return Environment(
        python=python,
        pip=pip,
        install=install,
        test_cmd=test_cmd,
        apt=apt,
        pre_install=pre_install,
        eval_commands=eval_commands,
        test_runner=runner,
        log_parser=log_parser,
        spec=f"{task.repo} {task.version}",
        notes=notes,
    )


def check_derivable(tasks: Iterable[Task]) -> None:
    """A SpecError for the first task without an `environment` that none can be derived for."""
    for task in tasks:
        if not task.has_environment:
            derive_environment(task)


def complete_environments(
    tasks: Iterable[Task], progress: Callable[[str], None] = lambda m: None, *, published: bool = False
) -> None:
    """Gives every task without an `environment` the one derived from the specs (SpecError if none).

    `published`: the tasks run in SWE-bench's own images, so only the test command, eval commands
    and log parser are used, and nothing differs from the official environment to note."""
    for task in tasks:
        if task.has_environment:
            continue
        task.environment = derive_environment(task)
        task.has_environment = True
        if published:
            task.environment.notes = []
        said = "; ".join(task.environment.notes)
        progress(
            f"{task.instance_id}: environment from swebench's spec for {task.environment.spec}"
            + (f" ({said})" if said else "")
        )


def _test_spec(task: Task, namespace: str | None = None):
    """swebench's TestSpec with what its image naming and log parsers read (no scripts: those would
    need the network)."""
    from swebench.harness.test_spec.test_spec import TestSpec

    return TestSpec(
        instance_id=task.instance_id,
        repo=task.repo,
        version=task.version,
        repo_script_list=[],
        eval_script_list=[],
        env_script_list=[],
        arch=PUBLISHED_ARCH,
        FAIL_TO_PASS=task.FAIL_TO_PASS,
        PASS_TO_PASS=task.PASS_TO_PASS,
        language="py",
        docker_specs={},
        namespace=namespace,
        instance_image_tag=PUBLISHED_TAG,
    )


def published_image(task: Task) -> str:
    """The name SWE-bench's harness gives the instance's published image (swebench/sweb.eval...)."""
    _tables()
    return _test_spec(task, PUBLISHED_NAMESPACE).instance_image_key


def test_directives(task: Task) -> list[str]:
    """What the harness passes to a non-pytest test command: the test patch's files (Django: modules)."""
    _tables()
    from swebench.harness.test_spec.python import get_test_directives

    return get_test_directives({"repo": task.repo, "test_patch": task.test_patch})


def parse_test_log(task: Task, log: str) -> dict[str, str]:
    """Test id -> PASSED / FAILED / SKIPPED / ERROR / XFAIL, as swebench's parser reads the output
    between the start and end markers (the whole log when they are missing)."""
    _, parsers = _tables()
    parser = parsers[task.environment.log_parser]
    if START_TEST_OUTPUT in log:
        log = log.split(START_TEST_OUTPUT, 1)[1].split(END_TEST_OUTPUT, 1)[0]
    return parser(log, _test_spec(task))


def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[; @]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def repository_requirements(task: Task, tree: Path) -> tuple[list[str], list[str]]:
    """The requirements file a spec with packages "requirements.txt" installs, read from the source
    tree (the harness downloads it from GitHub at the environment setup commit), with its `-r`
    includes and swebench's own clean-up; pins the spec's pip packages override are left out, as
    the harness installs those afterwards. (requirements, notes)"""
    environment = task.environment
    spec = spec_for(task) if environment.spec else {}
    if spec.get("packages") != "requirements.txt":
        return [], []
    runner = ["pytest"] if environment.test_runner == "pytest" else []
    runner_note = "the requirements file does not bring pytest: the newest is used"
    from swebench.harness.constants import MAP_REPO_TO_REQS_PATHS
    from swebench.harness.test_spec.python import clean_requirements

    paths = MAP_REPO_TO_REQS_PATHS.get(task.repo, [])
    found = next((p for p in paths if (tree / p).is_file()), None)
    if found is None:
        return runner, [
            f"the spec installs the repository's requirements file ({', '.join(paths) or 'unknown path'}), "
            "which is not in the source tree: only the spec's pip packages and the declared dependencies "
            "are installed",
            *([runner_note] if runner else []),
        ]
    lines: list[str] = []
    for line in (tree / found).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip().startswith("-r"):
            included = (tree / found).parent / line.strip()[2:].strip()
            if included.is_file():
                lines += included.read_text(encoding="utf-8", errors="replace").splitlines()
        else:
            lines.append(line)
    text = clean_requirements("\n".join(lines))
    overridden = {_requirement_name(p) for p in environment.pip}
    kept = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-", ".")) or _requirement_name(line) in overridden:
            continue
        kept.append(line)
    note = (
        f"the spec's {found} was read from the source tree at the base commit (the harness downloads "
        "it from GitHub at the environment setup commit)"
    )
    notes = [note]
    if runner and "pytest" not in {_requirement_name(line) for line in kept} | overridden:
        kept += runner
        notes.append(runner_note)
    return list(dict.fromkeys(kept)), notes
