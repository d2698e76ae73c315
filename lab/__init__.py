"""Test infrastructure that runs outside the raftnode package (see lab/raftlab)."""
