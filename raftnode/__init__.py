"""raftnode: a highly available, strongly consistent key-value cluster built on Raft."""

__version__ = "0.1.0"
