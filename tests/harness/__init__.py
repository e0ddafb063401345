"""Our own harness, shared by the tests and the benchmark: the synthetic agent and server, and the fault scenarios."""
