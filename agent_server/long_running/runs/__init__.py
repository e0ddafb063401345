"""The run lifecycle: admit, claim, run an attempt, write its events, recover, stay alive."""
