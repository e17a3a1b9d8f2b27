"""`mmx-agent eval report`: numbers checked by hand, pages rendered in a real headless Chromium
(screenshot and DOM checked, no console message), model-written text proven inert, bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.config import Settings
from evals.agents import MmxAgent
from evals.report.load import load_output, load_outputs
from evals.report.stats import compare, mcnemar_exact_p, paired_bootstrap_interval
from evals.runner import EvalRunner, RunOptions
from tests.agent.helpers import raw_completion, write_replay
from tests.evals.conftest import unavailable
from tests.evals.report_outputs import (
    INFRA,
    NO_PATCH,
    RESOLVED,
    UNFINISHED,
    UNRESOLVED,
    Trajectory,
    write_output,
)

CLI = [sys.executable, "-m", "agent", "eval", "report"]
WINDOW = (1280, 1600)
HOSTILE = "<script>console.error('pwned')</script><img src=x onerror=\"console.error('pwned')\">"


# -- a real browser ---------------------------------------------------------------------------------


@dataclass
class Rendered:
    screenshot: Path
    dom: str
    console: list[str]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        unavailable("no chromium on PATH (Debian: apt-get install chromium)")
    return found


def render(page: Path, scratch: Path) -> Rendered:
    """Loads the page in headless Chromium: its screenshot, its DOM after parsing, and every console
    message (the report has no script, so a message means something ran or was blocked)."""
    scratch.mkdir(parents=True, exist_ok=True)
    screenshot = scratch / "page.png"
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={scratch / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return Rendered(screenshot, result.stdout, console)


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def elements(dom: str) -> _Elements:
    parser = _Elements()
    parser.feed(dom)
    return parser


def assert_renders_cleanly(rendered: Rendered) -> _Elements:
    from PIL import Image, ImageStat

    assert rendered.console == []
    with Image.open(rendered.screenshot) as image:
        assert image.format == "PNG" and image.size == WINDOW
        gray = image.convert("L")
        assert ImageStat.Stat(gray).stddev[0] > 20  # text, tables and charts: not a blank page
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50
    dom = elements(rendered.dom)
    tags = [tag for tag, _ in dom.tags]
    assert "script" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attrs in dom.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), (tag, name, value[:80])  # no network
    charts = [attrs for tag, attrs in dom.tags if tag == "img" and "chart" in (attrs.get("class") or "")]
    assert len(charts) >= 2 and all(a["src"].startswith("data:image/svg+xml;base64,") for a in charts)
    return dom


def test_the_browser_check_sees_console_messages_and_blank_pages(tmp_path):
    page = tmp_path / "noisy.html"
    page.write_text("<!DOCTYPE html><html><body><script>console.error('noisy')</script></body></html>")
    rendered = render(page, tmp_path / "chromium")
    assert any("noisy" in line for line in rendered.console)
    with pytest.raises(AssertionError):
        assert_renders_cleanly(rendered)


# -- numbers by hand ------------------------------------------------------------------------------

K_RUNS = {  # resolved in 3, 1, 0 and 2 of 3 runs
    "calc-1": [RESOLVED, RESOLVED, RESOLVED],
    "calc-2": [RESOLVED, UNRESOLVED, UNRESOLVED],
    "calc-3": [UNRESOLVED, UNRESOLVED, UNRESOLVED],
    "text-1": [RESOLVED, RESOLVED, UNRESOLVED],
}


def test_standard_error_and_pass_at_k_match_a_hand_computation(tmp_path):
    output = load_output(write_output(tmp_path / "k", K_RUNS))
    summary = output.summary
    assert summary.rates == [0.75, 0.5, 0.25]
    # stdev of (0.75, 0.5, 0.25) = sqrt((0.25² + 0 + 0.25²) / 2) = 0.25; / sqrt(3 runs)
    assert summary.stderr == pytest.approx(0.25 / math.sqrt(3), abs=1e-6)
    # pass@k = mean over tasks of 1 - C(n - c, k) / C(n, k), n = 3 runs, c = resolved runs
    assert summary.pass_at[1] == pytest.approx((1 + 1 / 3 + 0 + 2 / 3) / 4, abs=1e-6)
    assert summary.pass_at[2] == pytest.approx((1 + (1 - 1 / 3) + 0 + 1) / 4, abs=1e-6)
    assert summary.pass_at[3] == pytest.approx(3 / 4, abs=1e-6)


def test_exact_mcnemar_p_values_by_hand():
    assert mcnemar_exact_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 2**10)  # 0.109375
    assert mcnemar_exact_p(2, 8) == mcnemar_exact_p(8, 2)
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 2**5)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0


def ab_outputs(root: Path) -> tuple[Path, Path]:
    """20 shared tasks: A resolves 0-9, B resolves 2-17. B fixes 8 that A missed, breaks 2."""
    ids = [f"task-{n:02d}" for n in range(20)]
    a = {i: [RESOLVED if n < 10 else UNRESOLVED] for n, i in enumerate(ids)}
    b = {i: [RESOLVED if 2 <= n < 18 else UNRESOLVED] for n, i in enumerate(ids)}
    b["only-in-b"] = [RESOLVED]
    return write_output(root / "A", a), write_output(root / "B", b, agent="mmx-agent/replay/other")


def test_the_paired_comparison_of_a_known_case(tmp_path):
    a, b = load_outputs(list(ab_outputs(tmp_path)))
    comparison = compare(a, b)
    assert len(comparison.shared) == 20 and comparison.only_in_b == 1
    assert (comparison.rate_a, comparison.rate_b) == (0.5, 0.8)
    assert comparison.difference == pytest.approx(0.3)
    assert comparison.b_only == [f"task-{n}" for n in range(10, 18)]
    assert comparison.a_only == ["task-00", "task-01"]
    assert comparison.p_value == pytest.approx(0.109375)
    # Paired differences: eight +1, two -1, ten 0. Mean 0.3; the mean's standard error is
    # sqrt((10/20 - 0.3²) / 20) = 0.1432, so a 95% interval is about 0.3 ± 1.96 * 0.1432.
    half_width = 1.96 * math.sqrt((10 / 20 - 0.3**2) / 20)
    low, high = comparison.interval
    assert low == pytest.approx(0.3 - half_width, abs=0.06) and high == pytest.approx(
        0.3 + half_width, abs=0.06
    )
    assert comparison.interval == compare(a, b).interval  # a fixed seed: the same outputs, the same interval
    assert paired_bootstrap_interval([0.25] * 7) == pytest.approx((0.25, 0.25))


# -- pages in a browser ---------------------------------------------------------------------------


def report_cli(*args: str, exit_code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == exit_code, result.stderr[-3000:]
    return result


def test_k_runs_with_infra_failures_unfinished_jobs_and_a_hostile_trajectory_render(tmp_path):
    hostile = Trajectory(
        reasoning=f"thinking {HOSTILE}",
        tool_output=f"file contents {HOSTILE}",
        final=f"done {HOSTILE}",
        extra_events=[{"type": "status", "message": HOSTILE, "level": "warning"}],
    )
    outcomes = {
        **K_RUNS,
        "text-2": [INFRA, UNFINISHED, NO_PATCH],
    }
    output = write_output(
        tmp_path / "k-runs",
        outcomes,
        repos={"text-1": "mmx-evals/text", "text-2": "mmx-evals/text"},
        trajectory=hostile,
        patch=f"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-x = 1\n+x = '</pre>{HOSTILE}'\n",
    )
    page = tmp_path / "report.html"
    written = json.loads(report_cli(str(output), "--html", str(page)).stdout)
    assert written == {"html": str(page)}
    dom = assert_renders_cleanly(render(page, tmp_path / "chromium"))
    text = "".join(dom.text)
    assert text.count(HOSTILE) >= 5  # reasoning, tool result, final answer, status note, the diff
    assert "pwned" not in "".join(str(attrs) for _, attrs in dom.tags)
    assert "Resolve rate" in text and "pass@3" in text and "build" in text  # the infra failure's kind
    assert "tests/test_calc.py::test_divide" in text  # the failing test of an unresolved job
    for outcome in ("infra failure", "not finished", "no patch", "resolved", "unresolved"):
        assert outcome in text


def test_an_ab_pair_renders_and_the_markdown_names_the_flips(tmp_path):
    a, b = ab_outputs(tmp_path)
    page, markdown = tmp_path / "ab.html", tmp_path / "ab.md"
    written = json.loads(report_cli(str(a), str(b), "--html", str(page), "--markdown", str(markdown)).stdout)
    assert written == {"html": str(page), "markdown": str(markdown)}
    dom = assert_renders_cleanly(render(page, tmp_path / "chromium"))
    text = "".join(dom.text)
    assert "B vs A" in text and "No trajectory" in text
    summary = markdown.read_text()
    assert "| 20 | 50.0% | 80.0% | +30.0 pp |" in summary and "| 0.1094 |" in summary
    assert "Resolved by B only: `task-10`, `task-11`" in summary
    assert "Resolved by A only: `task-00`, `task-01`" in summary


def test_the_markdown_summary_alone(tmp_path):
    output = write_output(tmp_path / "k", K_RUNS)
    markdown = tmp_path / "summary.md"
    assert json.loads(report_cli(str(output), "--markdown", str(markdown)).stdout) == {
        "markdown": str(markdown)
    }
    first_row = markdown.read_text().splitlines()[4]
    assert first_row.startswith(
        "| k | `mmx-agent/replay/m` | 4 | 3 | 50.0% | 14.4% | 50.0% | 66.7% | 75.0% |"
    )


# -- bad input ------------------------------------------------------------------------------------


def test_bad_paths_and_missing_options_are_exit_2_with_a_message(tmp_path):
    good = write_output(tmp_path / "good", K_RUNS)
    (tmp_path / "not-an-output").mkdir()
    (tmp_path / "a-file").write_text("x")
    page = str(tmp_path / "r.html")
    cases = {
        "no such directory": [str(tmp_path / "missing"), "--html", page],
        "not an `eval run` output directory": [str(tmp_path / "not-an-output"), "--html", page],
        "is not a directory": [str(tmp_path / "a-file"), "--html", page],
        "give --html FILE and/or --markdown FILE": [str(good)],
    }
    for message, args in cases.items():
        result = report_cli(*args, exit_code=2)
        assert result.stdout == "" and message in result.stderr and "Traceback" not in result.stderr
    assert not Path(page).exists()


def test_without_the_report_extra_the_command_says_what_to_install(tmp_path):
    output = write_output(tmp_path / "k", K_RUNS)
    script = (
        "import sys; sys.modules['matplotlib'] = None; sys.argv = ['mmx-agent', 'eval', 'report', *sys.argv[1:]]; "
        "from agent.app.cli import main; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(output), "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert "matplotlib" in result.stderr and "mmx-agent[report]" in result.stderr


# -- a real run ------------------------------------------------------------------------------------


def test_a_real_run_of_the_mmx_agent_renders_with_its_trajectory_inert(
    synthetic_suite, env_image, tmp_path, isolated_state
):
    """The model's words reach the report through real tool output and a real graded patch."""
    replay = write_replay(
        tmp_path / "replay.jsonl",
        [
            raw_completion("Look around first.", "", [("bash", {"command": f"cat <<'END'\n{HOSTILE}\nEND"})]),
            raw_completion(
                f"Fix the division. {HOSTILE}",
                "",
                [
                    (
                        "edit_file",
                        {"path": "calc.py", "old": "return a // b", "new": "return a / b  # </pre><script>"},
                    )
                ],
            ),
            raw_completion("Done.", f"divide returns a float now. {HOSTILE}"),
        ],
    )
    output = tmp_path / "real"
    EvalRunner(
        [synthetic_suite.task("mmx-evals__calc-1")],
        MmxAgent(Settings(backend="replay", replay=str(replay)), timeout=600),
        RunOptions(output=output, repos_dir=synthetic_suite.repos_dir),
    ).run()
    page = tmp_path / "real.html"
    report_cli(str(output), "--html", str(page))
    dom = assert_renders_cleanly(render(page, tmp_path / "chromium"))
    text = "".join(dom.text)
    assert "1/1 resolved" in text
    assert text.count(HOSTILE) >= 3  # the echoed tool result, the reasoning, the final answer
    assert "return a / b  # </pre><script>" in text  # the diff, as text


def test_trajectories_can_be_left_out_of_a_large_report(tmp_path):
    output = write_output(tmp_path / "k", K_RUNS, trajectory=Trajectory(tool_output="UNIQUE-TOOL-OUTPUT"))
    page = tmp_path / "small.html"
    report_cli(str(output), "--html", str(page), "--no-trajectories")
    text = page.read_text()
    assert "UNIQUE-TOOL-OUTPUT" not in text and text.count("Trajectory left out") == 12


def test_outputs_killed_before_any_job_finished_or_with_broken_job_files_render(tmp_path):
    started = tmp_path / "started"
    started.mkdir()
    (started / "run.json").write_text(
        json.dumps({"title": "t", "agent": "mmx", "runs": 2, "instance_ids": ["a", "b"]})
    )
    broken = write_output(tmp_path / "broken", K_RUNS)
    (broken / "run-1" / "calc-1" / "report.json").write_text('{"calc-1": "not an entry"}')
    (broken / "run-2" / "calc-1" / "agent.json").write_text(
        '{"agent": "x", "infra_failure": {"kind": "oom"}}'
    )
    (broken / "run-3" / "calc-1" / "grading.json").write_text("{half written")
    page, markdown = tmp_path / "r.html", tmp_path / "r.md"
    report_cli(str(started), str(broken), "--html", str(page), "--markdown", str(markdown))
    assert "| started | `mmx` | 2 | 2 | 0.0% | 0.0% |" in markdown.read_text()
    assert page.read_text().count('<span class="badge not-finished">not finished</span>') >= 5
