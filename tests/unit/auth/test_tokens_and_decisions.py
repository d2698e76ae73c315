"""The token file parser, token lookup, and the authorization decision (role x prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from raftnode.defaults import Limits
from raftnode.http.auth import AuthSettings, ClientAuth, Requirement, decide, requirement
from raftnode.http.connection import Request
from raftnode.http.errors import ApiError
from raftnode.tokens import (
    Principal,
    Role,
    TokenFileError,
    load_token_file,
    new_token,
    parse_token_file,
    token_line,
)


def _request(method: str, path: str, body: bytes = b"", query: str = "") -> Request:
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    return Request(
        method, path, path, {k: [v] for k, v in params.items()}, {}, body, "127.0.0.1", 0.0
    )


def test_a_created_line_parses_back_and_finds_its_token_only() -> None:
    token, other = new_token(), new_token()
    line = token_line("app", Role.WRITE, ["app/", "shared/"], token)
    assert token not in line
    table = parse_token_file(yaml.safe_load(line))
    assert table.by_token(token) == Principal("app", Role.WRITE, ("app/", "shared/"))
    assert table.by_token(other) is None
    assert len(token) > 40 and token.startswith("rn_")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"name": "a", "role": "root", "sha256": "00" * 32}, "[0].role: must be read, write"),
        ({"role": "read", "sha256": "00" * 32}, "[0].name"),
        ({"name": "a", "role": "read", "sha256": "abc"}, "[0].sha256: must be 64 hex"),
        ({"name": "a", "role": "read", "sha256": "zz" * 32}, "[0].sha256: must be 64 hex"),
        ({"name": "a", "role": "read"}, "exactly one of sha256"),
        ({"name": "a", "role": "read", "sha256": "00" * 32, "certificate": "x"}, "exactly one"),
        ({"name": "a", "role": "read", "sha256": "00" * 32, "prefixes": "app/"}, "prefixes"),
        ({"name": "a", "role": "read", "sha256": "00" * 32, "prefixes": [""]}, "prefixes"),
        ({"name": "a", "role": "read", "sha256": "00" * 32, "colour": 1}, "unknown key(s) colour"),
        ("just a string", "[0]: must be a mapping"),
    ],
)
def test_each_bad_entry_is_named(entry: Any, problem: str) -> None:
    with pytest.raises(TokenFileError) as info:
        parse_token_file([entry])
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_a_duplicate_token_and_a_non_list_are_refused(tmp_path: Path) -> None:
    entry = {"name": "a", "role": "read", "sha256": "11" * 32}
    with pytest.raises(TokenFileError, match="same token"):
        parse_token_file([entry, {**entry, "name": "b"}])
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens: {}\n")
    with pytest.raises(TokenFileError, match="must be a list"):
        load_token_file(path)
    with pytest.raises(TokenFileError, match="cannot read"):
        load_token_file(tmp_path / "absent.yaml")
    path.write_text("")
    assert len(load_token_file(path)) == 0


def test_certificate_entries_map_names_to_principals() -> None:
    table = parse_token_file([{"name": "ops", "role": "admin", "certificate": "ops.example"}])
    assert table.by_certificate(["other", "ops.example"]) == Principal("ops", Role.ADMIN)
    assert table.by_certificate(["other"]) is None


READER = Principal("r", Role.READ)
WRITER_APP = Principal("w", Role.WRITE, ("app/",))
ADMIN = Principal("a", Role.ADMIN)


@pytest.mark.parametrize(
    ("principal", "need", "allowed"),
    [
        (READER, Requirement(Role.READ, keys=("x",)), True),
        (READER, Requirement(Role.WRITE, keys=("x",)), False),
        (READER, Requirement(Role.ADMIN), False),
        (WRITER_APP, Requirement(Role.READ, keys=("app/a",)), True),
        (WRITER_APP, Requirement(Role.WRITE, keys=("app/a",)), True),
        (WRITER_APP, Requirement(Role.WRITE, keys=("other",)), False),
        (WRITER_APP, Requirement(Role.WRITE, keys=("app",)), False),
        (WRITER_APP, Requirement(Role.READ, ranges=("app/",)), True),
        (WRITER_APP, Requirement(Role.READ, ranges=("app/sub",)), True),
        (WRITER_APP, Requirement(Role.READ, ranges=("ap",)), False),
        (WRITER_APP, Requirement(Role.READ, ranges=("",)), False),
        (WRITER_APP, Requirement(Role.WRITE, unscoped=True), False),
        (WRITER_APP, Requirement(Role.ADMIN), False),
        (ADMIN, Requirement(Role.ADMIN), True),
        (ADMIN, Requirement(Role.WRITE, unscoped=True), True),
        (ADMIN, Requirement(Role.READ, ranges=("",)), True),
    ],
)
def test_role_by_prefix_decisions(principal: Principal, need: Requirement, allowed: bool) -> None:
    refused = decide(principal, need)
    assert (refused is None) == allowed
    if refused is not None:
        assert refused.status == 403
        assert need.role.label in refused.message or "prefix" in refused.message


def test_requirements_of_each_route() -> None:
    limits = Limits()
    post = _request("POST", "/kv", b'{"key": "app/x", "value": "1"}')
    assert requirement(post, WRITER_APP, limits) == Requirement(Role.WRITE, keys=("app/x",))
    assert requirement(post, ADMIN, limits) == Requirement(Role.WRITE)  # body not parsed
    assert requirement(_request("GET", "/kv/a"), READER, limits).role is Role.READ
    assert requirement(_request("DELETE", "/kv/a"), READER, limits).role is Role.WRITE
    listing = _request("GET", "/kv", query="prefix=app/")
    assert requirement(listing, READER, limits).ranges == ("app/",)
    assert requirement(_request("GET", "/admin/v1/members"), READER, limits).role is Role.ADMIN
    assert requirement(_request("POST", "/kv/txn/new"), READER, limits).role is Role.WRITE
    reads = b'{"compare": [{"key": "app/a", "target": "version", "op": "equal", "value": 0}],'
    reads += b' "success": [{"op": "get", "key": "app/b"}]}'
    txn_read = _request("POST", "/txn", reads)
    assert requirement(txn_read, READER, limits) == Requirement(Role.READ)
    assert requirement(txn_read, WRITER_APP, limits) == Requirement(
        Role.READ, keys=("app/a", "app/b")
    )
    writes = b'{"success": [{"op": "put", "key": "app/a", "value": "1"}],'
    writes += b' "failure": [{"op": "delete", "key": "other/b"}]}'
    txn_write = _request("POST", "/txn", writes)
    assert requirement(txn_write, READER, limits).role is Role.WRITE
    refused = decide(WRITER_APP, requirement(txn_write, WRITER_APP, limits))
    assert refused is not None and refused.status == 403 and "other/b" in refused.message


def test_authentication_order_and_answers(tmp_path: Path) -> None:
    token = new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(token_line("app", Role.WRITE, [], token) + "\n")
    closed = ClientAuth(AuthSettings(token_file=path))
    assert closed.authenticate(f"Bearer {token}") == Principal("app", Role.WRITE)
    for header in (None, "Bearer nope", "Basic abc", "Bearer "):
        answer = closed.authenticate(header)
        assert isinstance(answer, ApiError) and answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="raftnode"')
    anonymous = ClientAuth(AuthSettings(token_file=path, anonymous_role=Role.READ))
    assert anonymous.authenticate(None) == Principal("anonymous", Role.READ)
    bad = anonymous.authenticate("Bearer wrong")
    assert isinstance(bad, ApiError) and bad.status == 401  # a bad token is never anonymous


def test_reload_keeps_the_old_table_when_the_new_file_is_bad(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    path = tmp_path / "tokens.yaml"
    path.write_text(token_line("one", Role.READ, [], first) + "\n")
    auth = ClientAuth(AuthSettings(token_file=path))
    path.write_text("- {name: broken, role: superuser, sha256: x}\n")
    assert not auth.reload()
    assert auth.authenticate(f"Bearer {first}") == Principal("one", Role.READ)
    path.write_text(token_line("two", Role.ADMIN, [], second) + "\n")
    assert auth.reload()
    assert isinstance(auth.authenticate(f"Bearer {first}"), ApiError)
    assert auth.authenticate(f"Bearer {second}") == Principal("two", Role.ADMIN)


def test_a_watch_needs_read_and_a_range_inside_the_tokens_prefixes() -> None:
    limits = Limits()
    on_prefix = requirement(_request("GET", "/watch", query="prefix=app/"), WRITER_APP, limits)
    assert on_prefix == Requirement(Role.READ, ranges=("app/",))
    assert decide(WRITER_APP, on_prefix) is None
    one_key = requirement(_request("GET", "/watch", query="key=app/x"), WRITER_APP, limits)
    assert (
        one_key == Requirement(Role.READ, keys=("app/x",)) and decide(WRITER_APP, one_key) is None
    )
    everything = requirement(_request("GET", "/watch"), WRITER_APP, limits)
    refused = decide(WRITER_APP, everything)
    assert refused is not None and refused.status == 403
    outside = requirement(_request("GET", "/watch", query="key=other"), WRITER_APP, limits)
    assert decide(WRITER_APP, outside) is not None


def test_leases_need_write_to_change_and_read_to_look_and_no_prefix_limit() -> None:
    limits = Limits()
    reader = Principal("reader", Role.READ)
    writer = Principal("writer", Role.WRITE)
    changes = [("POST", "/lease"), ("POST", "/lease/7/keepalive"), ("DELETE", "/lease/7")]
    for method, path in changes:
        need = requirement(_request(method, path), writer, limits)
        assert need.role is Role.WRITE and need.unscoped, (method, path)
        assert decide(writer, need) is None
        refused = decide(reader, requirement(_request(method, path), reader, limits))
        assert refused is not None and refused.status == 403
    for path in ("/lease", "/lease/7"):
        need = requirement(_request("GET", path), reader, limits)
        assert need.role is Role.READ and decide(reader, need) is None
    # A token limited to prefixes cannot name the keys a lease may delete: refused.
    limited = decide(WRITER_APP, requirement(_request("POST", "/lease"), WRITER_APP, limits))
    assert limited is not None and limited.status == 403
