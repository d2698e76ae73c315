"""Errors the core raises at its API (never for peer messages, which it drops or answers)."""

from __future__ import annotations

from raftnode.raft.types import NO_NODE


class RaftError(Exception):
    """Base class of the core's API errors."""


class NotLeaderError(RaftError):
    """The request needs the leader. ``leader_id`` is the known leader, or 0 when unknown."""

    def __init__(self, message: str, leader_id: int = NO_NODE):
        super().__init__(message)
        self.leader_id = leader_id


class ConfChangeError(RaftError):
    """A membership change cannot be proposed now or is invalid; the message says why."""


class LeaderNotReady(ConfChangeError):
    """A new leader has not committed an entry of its term yet: retry in a moment."""
