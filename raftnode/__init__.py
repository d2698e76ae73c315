"""raftnode: a highly available, strongly consistent key-value cluster built on Raft."""

# The version, written only here: pyproject.toml reads it (dynamic) and `raftnode --version`
# prints it.
__version__ = "0.1.0"
