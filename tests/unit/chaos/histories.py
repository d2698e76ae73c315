"""Hand-made histories for the checker's tests: one operation per call, times in seconds."""

from __future__ import annotations

from chaos.history import Operation, Outcome


def op(
    process: str | int,
    kind: str,
    invoke: float,
    complete: float,
    outcome: Outcome = "ok",
    key: str = "k",
    value: str | None = None,
    expected: str | None = None,
    result: object = None,
    consistency: str | None = None,
    endpoint: str | None = None,
    note: str = "",
) -> Operation:
    return Operation(
        process=str(process),
        kind=kind,
        invoke=invoke,
        complete=complete,
        outcome=outcome,
        key=key,
        value=value,
        expected=expected,
        result=result,
        consistency=consistency,
        endpoint=endpoint,
        note=note,
    )


def put(p: int, t0: float, t1: float, v: str, outcome: Outcome = "ok", key: str = "k") -> Operation:
    return op(p, "put", t0, t1, outcome, key=key, value=v)


def get(
    p: int, t0: float, t1: float, result: str | None, key: str = "k", **extra: object
) -> Operation:
    return op(p, "get", t0, t1, "ok", key=key, result=result, **extra)  # type: ignore[arg-type]


def cas(
    p: int,
    t0: float,
    t1: float,
    expected: str | None,
    v: str,
    outcome: Outcome = "ok",
    key: str = "k",
) -> Operation:
    return op(p, "cas", t0, t1, outcome, key=key, value=v, expected=expected)
