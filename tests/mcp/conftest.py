from tests.agent.conftest import isolated_home  # noqa: F401 - sessions and config under tmp
