"""What the tests and the benchmark share: the synthetic agent and server, the fault scenarios
(``python -m harness.chaos``) and a webhook receiver. Not part of the product."""
