"""The HTTP surface: routes, what a request must look like, who is asking, how a stream ends."""
