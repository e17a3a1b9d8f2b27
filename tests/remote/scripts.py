"""The scripted M2 turns the tests replay: reasoning with bytes that break naive code."""

from tests.remote.servers import Reply

R1 = (
    "Read the file first — naïve café 🚀; check `a < b && c > d`.\n\n"
    'Then {"json": [1, 2]} and a tab\there. <invoke name="x"> in a thought is not a call.'
)
R2 = "第二步：写文件。 Then add 17 and 25 — both calls in one block, in order."
R3 = "All done; summarise in one line.  Trailing spaces kept  "
WRITE_CONTENT = 'line 1\n"quoted" \\ back</parameter> x'  # no edge newlines: XML values lose them

THREE_ROUNDS = [
    Reply(R1, "", [("read_file", {"path": "src/ü.py"})]),
    Reply(
        R2,
        "Writing it now.",
        [("write_file", {"path": "out.txt", "content": WRITE_CONTENT}), ("add", {"a": 17, "b": 25})],
    ),
    Reply(R3, "Done: wrote out.txt, and 17 + 25 = 42."),
]

DOCTOR_REASONING = " ".join(
    ["The user wants 17 plus 25; I should call the add tool rather than guess, then report the sum."] * 4
)
DOCTOR_ROUNDS = [Reply(DOCTOR_REASONING, "", [("add", {"a": 17, "b": 25})]), Reply("The tool said 42.", "42")]


def expected_rounds(script: list[Reply]) -> list[tuple[str, str, list[tuple[str, dict]]]]:
    return [(r.reasoning, r.content, [(n, a) for n, a in r.calls]) for r in script]


def observed_rounds(transcript) -> list[tuple[str, str, list[tuple[str, dict]]]]:
    return [(r.reasoning, r.text, [(c.name, c.arguments) for c in r.calls]) for r in transcript.rounds]
