"""What the tests and the benchmark share: the synthetic agent and server, the fault scenarios
(``python -m harness.chaos``), a webhook receiver and a scripted model endpoint that counts its calls. Not part of the product."""
