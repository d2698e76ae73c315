"""The clusters the side-by-side benchmarks start: raftnode, etcd, PySyncObj, and HAProxy."""
