"""`pytest smoke_tests/` loads the suite's plugin (the CLI passes it with -p)."""

pytest_plugins = ["smoke_tests.plugin"]
