"""Conversations: which one a response joins, and the history its handler sees."""
