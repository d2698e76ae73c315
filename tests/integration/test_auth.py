"""Bearer tokens on real processes: 401 and 403 for each role and prefix case, the admin API
only for ``admin``, forwarding that keeps the principal, ``/status`` restricted while the
checks HAProxy polls stay open, and the token file re-read on SIGHUP."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftnode.tokens import Role, new_token, token_line
from tests.integration.cluster import Cluster, Response

TOKENS = {name: new_token() for name in ("reader", "app", "admin", "later")}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


def write_tokens(path: Path, *names: str) -> None:
    roles = {"reader": Role.READ, "app": Role.WRITE, "admin": Role.ADMIN, "later": Role.WRITE}
    prefixes = {"app": ["app/"]}
    path.write_text(
        "".join(token_line(n, roles[n], prefixes.get(n, []), TOKENS[n]) + "\n" for n in names)
    )


@pytest.fixture(scope="module")
def c() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="raftnode-it-auth-"))
    write_tokens(base / "tokens.yaml", "reader", "app", "admin")
    auth = {"token_file": "tokens.yaml", "anonymous_role": "none", "status_role": "read"}
    cluster = Cluster(auth=auth, base=base)
    try:
        cluster.start()
        cluster.leader()
        yield cluster
    finally:
        cluster.close()


def follower_of(c: Cluster) -> int:
    leader = c.leader()
    return next(i for i in (1, 2, 3) if i != leader)


def assert_401(r: Response) -> None:
    assert r.status == 401, r
    challenge = {k.lower(): v for k, v in r.headers.items()}.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="raftnode"'), r.headers
    assert r.json()["error"] == "unauthorized"


def assert_403(r: Response, needs: str) -> None:
    assert r.status == 403, r
    body = r.json()
    assert body["error"] == "forbidden" and needs in body["message"], body


def test_no_token_or_an_unknown_one_gets_401(c: Cluster) -> None:
    leader = c.leader()
    assert_401(c.request(leader, "GET", "/kv/a"))
    assert_401(c.request(leader, "POST", "/kv", {"key": "a", "value": "1"}))
    assert_401(
        c.request(leader, "GET", "/kv/a", headers={"Authorization": f"Bearer {new_token()}"})
    )
    assert_401(c.request(leader, "GET", "/kv/a", headers={"Authorization": "Basic YTpi"}))
    assert_401(c.admin(leader, "GET", "/members"))


def test_roles_read_write_admin(c: Cluster) -> None:
    leader = c.leader()
    assert c.request(leader, "PUT", "/kv/app/one", {"value": "1"}, bearer("app")).status == 200
    assert c.request(leader, "GET", "/kv/app/one", headers=bearer("reader")).status == 200
    assert_403(c.request(leader, "PUT", "/kv/app/two", {"value": "2"}, bearer("reader")), "write")
    assert_403(c.request(leader, "DELETE", "/kv/app/one", headers=bearer("reader")), "write")
    assert c.request(leader, "PUT", "/kv/free", {"value": "1"}, bearer("admin")).status == 200


def test_a_prefix_limits_keys_and_lists(c: Cluster) -> None:
    leader = c.leader()
    app = bearer("app")
    assert c.request(leader, "POST", "/kv", {"key": "app/p", "value": "1"}, app).status == 200
    assert_403(c.request(leader, "POST", "/kv", {"key": "other", "value": "1"}, app), "other")
    assert_403(c.request(leader, "PUT", "/kv/other", {"value": "1"}, app), "prefixes")
    assert_403(c.request(leader, "GET", "/kv/apple", headers=app), "prefixes")
    listing = c.request(leader, "GET", "/kv?prefix=app/", headers=app)
    assert listing.status == 200 and all(
        i["key"].startswith("app/") for i in listing.json()["items"]
    )
    assert c.request(leader, "GET", "/kv?prefix=app/sub", headers=app).status == 200
    assert_403(c.request(leader, "GET", "/kv", headers=app), "listing prefix ''")
    assert_403(c.request(leader, "GET", "/kv?prefix=ap", headers=app), "listing prefix 'ap'")
    assert c.request(leader, "GET", "/kv?prefix=", headers=bearer("reader")).status == 200


def test_the_admin_api_needs_admin_and_is_logged(c: Cluster) -> None:
    leader = c.leader()
    for name in ("reader", "app"):
        assert_403(c.admin(leader, "GET", "/members", headers=bearer(name)), "admin")
        assert_403(c.admin(leader, "POST", "/leader/transfer", {}, bearer(name)), "admin")
        assert_403(c.admin(leader, "GET", "/snapshot", headers=bearer(name)), "admin")
        assert_403(c.admin(leader, "POST", "/compact", {"revision": 1}, bearer(name)), "admin")
    members = c.admin(leader, "GET", "/members", headers=bearer("admin"))
    assert members.status == 200 and len(members.json()["members"]) == 3
    c.wait_for(
        "the admin request in the log with its principal and address",
        lambda: any(
            "admin request" in line and "principal=admin" in line and "127.0.0.1" in line
            for line in c.log(leader).splitlines()
        ),
        timeout=5.0,
    )


def test_a_follower_forwards_the_clients_credentials(c: Cluster) -> None:
    follower = follower_of(c)
    r = c.request(follower, "PUT", "/kv/app/fwd", {"value": "f"}, bearer("app"))
    assert r.status == 200 and "X-Raftnode-Forwarded-To" in r.headers, r
    # The follower refuses what the principal may not do before forwarding anything.
    assert_403(c.request(follower, "PUT", "/kv/other", {"value": "f"}, bearer("app")), "prefix")
    admin = c.admin(follower, "GET", "/members", headers=bearer("admin"))
    assert admin.status == 200, admin


def test_health_checks_stay_open_and_status_needs_a_role(c: Cluster) -> None:
    leader = c.leader()
    assert c.health(leader, "/primary").status == 200
    assert c.health(leader, "/health").status == 200
    assert c.health(leader, "/readiness").status == 200
    assert c.health(follower_of(c), "/replica").status == 200
    assert_401(c.health(leader, "/status"))
    assert_401(c.health(leader, "/metrics"))
    assert c.health(leader, "/status", headers=bearer("reader")).status == 200
    assert c.health(leader, "/metrics", headers=bearer("reader")).status == 200


def test_sighup_adds_and_removes_tokens_and_refuses_a_bad_file(c: Cluster) -> None:
    tokens = c.base / "tokens.yaml"
    leader = c.leader()
    assert_401(c.request(leader, "PUT", "/kv/later", {"value": "1"}, bearer("later")))
    write_tokens(tokens, "app", "admin", "later")  # adds "later", removes "reader"
    for node in (1, 2, 3):
        c.signal(node, signal.SIGHUP)

    def reloaded() -> bool:
        r = c.request(leader, "PUT", "/kv/later", {"value": "1"}, bearer("later"))
        return r.status == 200

    c.wait_for("the new token to work after SIGHUP", reloaded, timeout=10.0)
    assert_401(c.request(leader, "GET", "/kv/later", headers=bearer("reader")))
    follower = follower_of(c)
    assert c.request(follower, "PUT", "/kv/later", {"value": "2"}, bearer("later")).status == 200

    tokens.write_text("- {name: broken, role: superuser}\n")
    c.signal(leader, signal.SIGHUP)
    c.wait_for(
        "the refused token file in the log",
        lambda: "token file refused" in c.log(leader) and "superuser" in c.log(leader),
        timeout=10.0,
    )
    assert c.request(leader, "GET", "/kv/later", headers=bearer("later")).status == 200
    assert c.health(leader, "/primary").status == 200
