"""Our own harnesses, not part of what a template user runs: the benchmark
(``uv run bench``), its floor server, the fault-injection scenarios, and the
scriptable agent and server process that the tests, the scenarios and the
benchmark all drive."""
