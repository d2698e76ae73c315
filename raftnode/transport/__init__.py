"""Peer networking: framed, authenticated Tornado TCP streams between Raft nodes."""
