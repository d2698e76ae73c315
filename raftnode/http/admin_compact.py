"""``POST /admin/v1/compact``: compact the history window on command (etcd's Compact).

The request names a revision R; the leader checks it against its store (R from 1 to the
store's revision, else 409 naming the bounds: well-formed, but refused by the state) and
proposes a ``Compact`` entry, which every node applies the same way: the changes up to R leave
the window, R becomes the compact revision, and watches behind it end with ``compacted``. A
revision the window already starts past is answered at once with the compact revision in force
(``"compacted": false``): asking twice is harmless. The admin API forwards the request to the
leader from a follower, as every admin write.
"""

from __future__ import annotations

import json

from raftnode.http.connection import Request, Response
from raftnode.http.errors import (
    ApiError,
    ErrorCode,
    bad_request,
    outcome_unknown,
    unavailable,
    upgrade_in_progress,
)
from raftnode.http.requests import decode_json_object
from raftnode.kv.commands import MAX_REVISION, Compact, CompactResult, Outcome
from raftnode.kv.service import KeyValueService, UpgradeInProgress
from raftnode.node import NotLeader, OutcomeUnknown, Unavailable


def _answer(result: CompactResult) -> Response:
    body = {
        "ok": True,
        "revision": result.revision,
        "compact_revision": result.compact_revision,
        "compacted": result.compacted,
    }
    return Response(200, json.dumps(body, separators=(",", ":")).encode())


def requested_revision(request: Request) -> int:
    """The body's ``revision``: an integer from 1 to ``MAX_REVISION``, the only field."""
    body = decode_json_object(request.body or b"{}")
    unknown = sorted(set(body) - {"revision"})
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; allowed: revision")
    rev = body.get("revision")
    if type(rev) is not int or not 0 < rev <= MAX_REVISION:
        raise bad_request(
            f"revision must be an integer from 1 to {MAX_REVISION} (the revision to compact "
            f"the history up to), got {rev!r}",
            ErrorCode.BAD_FIELD,
        )
    return rev


def _future(rev: int, result: CompactResult) -> ApiError:
    now, floor = result.revision, result.compact_revision
    bounds = (
        f"compact to a revision from {floor + 1} to {now}"
        if floor < now
        else f"the history is compacted up to {floor} already: nothing is left to compact"
    )
    return ApiError(
        409,
        ErrorCode.CONFLICT,
        f"revision {rev} is ahead of the store's current revision {now}; {bounds}",
        extra={"revision": result.revision, "compact_revision": result.compact_revision},
    )


async def compact(service: KeyValueService, rev: int, deadline: float) -> Response | None:
    """Compact through the log (this node leads); None when leadership moved (forward)."""
    store = service.store
    history = store.history
    now = CompactResult(store.revision, history.compact_revision if history else 0)
    if history is not None and rev <= history.compact_revision:
        return _answer(now)  # already compacted past it: nothing to propose
    if history is not None and rev > store.revision:
        raise _future(rev, now)
    try:
        result = await service.write(Compact(rev), deadline)
    except NotLeader:
        return None
    except UpgradeInProgress as e:
        raise upgrade_in_progress(str(e)) from e
    except Unavailable as e:
        raise unavailable(f"{e}; retry shortly") from e
    except OutcomeUnknown as e:
        raise outcome_unknown(
            f"{e}; ask again with the same revision: the answer tells the compact revision"
        ) from e
    assert isinstance(result, CompactResult)
    if result.error == Outcome.FUTURE_REVISION:
        raise _future(rev, result)
    if result.error == Outcome.NO_HISTORY:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            "the store keeps no change history yet (its format upgrade comes with the "
            "cluster's first write once every member runs this release): nothing to compact",
        )
    if result.error is not None:
        raise ApiError(500, ErrorCode.INTERNAL, f"the compaction was refused: {result.error}")
    return _answer(result)
