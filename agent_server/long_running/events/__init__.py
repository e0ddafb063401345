"""The event log: the stream grammar, Response objects, group commit and tailing."""
