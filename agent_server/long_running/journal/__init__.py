"""Resuming a run at the step it was on: the journal of model calls, the items already logged, and
what a handler that resumes at the step is given for each attempt."""
