"""`python -m sandbox.confinement.landlock_exec WORKSPACE TMPDIR NETWORK -- CMD ARGS`: runs one
long-lived program (an MCP server) under the rules the shell's commands get under Landlock.

The program replaces this process, so the Landlock domain, no_new_privs and the dropped
capabilities stay with it and everything it starts. Its rules are built for the workspace as it is
at the start (a top-level entry made later is not writable for it).
"""

from __future__ import annotations

import os
import sys

from sandbox.confinement import landlock
from sandbox.confinement.helper import CommandRules, restrict_helper


def main(argv: list[str]) -> None:
    if len(argv) < 5 or argv[3] != "--":
        sys.exit("usage: python -m sandbox.confinement.landlock_exec WORKSPACE TMPDIR NETWORK -- CMD ARGS")
    workspace, tmpdir, network, command = argv[0], argv[1], argv[2], argv[4:]
    abi = landlock.abi_version()
    rules = CommandRules(workspace, tmpdir, abi)
    ruleset = rules.ruleset_for(rules.listing())
    landlock.drop_capabilities()
    restrict_helper(abi, network)
    landlock.restrict_self(ruleset)
    os.environ["TMPDIR"] = tmpdir
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
