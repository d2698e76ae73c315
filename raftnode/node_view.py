"""What a running node shows: read-only properties for the HTTP layer, the health endpoints
and operators. ``RaftNode`` inherits them; every answer comes from the core's ``Status`` copy,
the carrier and the node's own counters, never from the core's internals."""

from __future__ import annotations

from typing import Any

from raftnode.compaction import SnapshotDriver
from raftnode.config import Address
from raftnode.node_errors import Unavailable
from raftnode.node_options import NodeOptions
from raftnode.node_status import member_rows, status_document
from raftnode.raft.core import RaftCore
from raftnode.raft.status import Role
from raftnode.raft.types import NO_NODE, ConfState
from raftnode.storage.log_store import LogStore
from raftnode.transport.carrier import MessageCarrier


class NodeView:
    """Read-only views of a ``RaftNode`` (the attributes below are the node's)."""

    node_id: int
    options: NodeOptions
    core: RaftCore | None
    carrier: MessageCarrier
    log_store: LogStore
    member_peers: dict[int, Address]
    cluster_id: bytes
    applied_index: int
    started: bool
    failure: BaseException | None
    _leader_commit_seen: int
    _snapshots: SnapshotDriver

    def members(self) -> list[dict[str, Any]]:
        """Every member with its role and address (``node_status.member_rows``)."""
        if self.core is None:
            raise Unavailable("the node is starting")
        return member_rows(self.core.status(), self.member_peers, self.carrier.connected)

    @property
    def role(self) -> Role:
        return self.core.role if self.core is not None else Role.FOLLOWER

    @property
    def term(self) -> int:
        return self.core.term if self.core is not None else 0

    @property
    def leader_id(self) -> int:
        return self.core.leader_id if self.core is not None else NO_NODE

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role is Role.LEADER

    @property
    def conf(self) -> ConfState:
        """The membership in force on this node (the latest configuration in its log)."""
        return self.core.conf if self.core is not None else ConfState()

    @property
    def config_index(self) -> int:
        """The log index of the configuration in force here (``prev_index`` compares to it)."""
        return self.core.config_index if self.core is not None else 0

    @property
    def membership(self) -> str:
        """``voter``, ``learner``, ``removed`` (the configuration no longer lists this node) or
        ``not_joined`` (started as ``existing`` and not yet contacted by a leader)."""
        return self.core.membership if self.core is not None else "not_joined"

    @property
    def commit_index(self) -> int:
        return self.core.commit_index if self.core is not None else 0

    @property
    def healthy(self) -> bool:
        return self.started and self.failure is None and self.log_store.healthy

    def has_quorum(self) -> bool:
        return self.core is not None and self.core.has_quorum_contact()

    def peer_connected(self, node_id: int) -> bool:
        """Whether this node's stream to ``node_id`` is up (a crashed peer shows as down)."""
        return self.carrier.connected(node_id)

    def members_below_version(self, version: int) -> list[int]:
        """Members (voters and learners of the configuration in force, this node aside) not
        known to speak peer protocol ``version``: never connected, or their latest stream
        negotiated an older one. An entry only they could not apply must wait for them."""
        conf = self.conf
        return sorted(
            member
            for member in conf.voters | conf.learners
            if member != self.node_id and self.carrier.peer_version(member) < version
        )

    def leader_recently_heard(self) -> bool:
        """This node leads, or heard from a leader (or granted a vote to a candidate) within
        the last three heartbeats. A leader cut off by the network stays "connected" (no
        reset) but goes quiet: forwarding to it would hang until a timeout, while waiting lets
        the next leader take the write."""
        return self.core is not None and self.core.status().leader_heard_within(3)

    def leader_presumed_gone(self) -> bool:
        """No leader heard for an election timeout, or this node campaigns (see
        ``Status.leader_presumed_gone``) or won a campaign of its own; also when there is no
        core (stopping). A node that forwarded a request asks this while it waits."""
        if self.core is None:
            return True
        st = self.core.status()
        return st.leader_presumed_gone() or st.leads_after_own_campaign()

    def replica_lag(self) -> int:
        """How many committed entries this node has not applied yet, as far as it knows."""
        return max(self._leader_commit_seen, self.commit_index) - self.applied_index

    def is_caught_up_replica(self, max_lag: int) -> bool:
        """A follower that knows a live leader and is at most ``max_lag`` entries behind."""
        if self.core is None:
            return False
        st = self.core.status()
        if st.role is not Role.FOLLOWER or st.leader_id == NO_NODE or st.leader_lost():
            return False
        if self.node_id not in st.conf.voters:
            return False  # learners catch up, removed nodes fall behind: neither serves reads
        return self.replica_lag() <= max_lag

    def status(self) -> dict[str, Any]:
        """The node as it sees itself and its peers (for ``/status``)."""
        st = self.core.status() if self.core is not None else None
        document = status_document(
            st,
            self.carrier.connected,
            node_id=self.node_id,
            cluster_id=self.cluster_id.hex(),
            applied=self.applied_index,
            snapshot_index=self._snapshots.last_index,
            lag=self.replica_lag(),
            quorum=self.has_quorum() if self.is_leader else None,
            healthy=self.healthy,
        )
        if self.options.failpoints:
            document["failpoints"] = sorted(self.options.failpoints)  # broken on purpose
        return document
