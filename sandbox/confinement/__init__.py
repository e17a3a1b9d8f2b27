"""OS confinement of the commands the model runs: bubblewrap, else Landlock, else none (loudly).

- `detect`: which confinement this machine gives (`choose`), tried for real once per process;
- `bwrap`: the bubblewrap command line of a session;
- `landlock`: the kernel interface (ctypes): rulesets, restricting a thread, dropping capabilities;
- `helper`: the process inside the confinement that runs the commands;
- `sandbox`: ConfinedSandbox, the local sandbox that sends the model's commands to that helper.

docs/safety.md says what each mode guarantees and what it cannot. (Nothing is imported here: the
helper imports `landlock` alone, and starts faster for it.)
"""
