"""Client authentication and authorization: who sent a request, and whether that may happen.

Every client API request passes ``ClientAuth.check`` at the routing point, before any handler
runs: a bearer token (``Authorization: Bearer ...``), else a client certificate mapped in the
token file, else the configured anonymous role. No usable identity: 401 with
``WWW-Authenticate``; an identity without the role or key prefix the request needs: 403 naming
it. ``requirement`` says what each route needs; a route it does not know needs ``read`` (GET)
or ``write`` (anything else) and a token not limited to prefixes, so a new endpoint fails
closed for prefix-limited tokens until it says which keys it touches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raftnode.http import requests
from raftnode.http.connection import Request
from raftnode.http.errors import ApiError, ErrorCode
from raftnode.tokens import (
    AuthSettings,
    Principal,
    Role,
    TokenFileError,
    TokenTable,
    load_token_file,
)

log = logging.getLogger(__name__)
admin_log = logging.getLogger("raftnode.admin")

ADMIN_PREFIX = "/admin/v1"
REALM = 'Bearer realm="raftnode"'
ANONYMOUS = "anonymous"
ASSERTION_SCHEME = "Raftnode-Assertion"
"""``Authorization`` a follower puts on a request it forwards for a principal that proved
itself with a client certificate (the leader cannot see that certificate): the principal,
bound to this request's method, target and body, signed with the cluster secret."""
ASSERTION_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Requirement:
    role: Role
    keys: tuple[str, ...] = ()
    """Keys the request touches (each must be inside the principal's prefixes)."""
    ranges: tuple[str, ...] = ()
    """Key prefixes the request reads as a range (each must lie inside the principal's)."""
    unscoped: bool = False
    """The request touches keys this module cannot name: only an unlimited principal may."""


def _is_admin(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def requirement(request: Request, principal: Principal, limits: Any) -> Requirement:
    """What ``request`` needs. The key of ``POST /kv`` is read from the body only for a
    principal limited to prefixes (with the handler's own parser, so they cannot disagree)."""
    path, method = request.path, request.method
    if _is_admin(path):
        return Requirement(Role.ADMIN)
    if path in ("/kv", "/kv/"):
        if method == "GET":
            return Requirement(Role.READ, ranges=(request.param("prefix") or "",))
        if method == "POST":
            if not principal.prefixes:
                return Requirement(Role.WRITE)
            return Requirement(Role.WRITE, keys=(requests.put_from_post(request.body, limits).key,))
    elif path == "/watch" and method == "GET":
        key = request.param("key")
        if key is not None:
            return Requirement(Role.READ, keys=(key,))
        # start/end only narrow the prefix (as on GET /kv): the prefix is what is read.
        return Requirement(Role.READ, ranges=(request.param("prefix") or "",))
    elif path == "/txn" and method == "POST":
        return _txn_requirement(request, principal, limits)
    elif path.startswith("/kv/") and len(path) > 4:
        role = Role.READ if method in ("GET", "HEAD") else Role.WRITE
        return Requirement(role, keys=(path[4:],))
    role = Role.READ if method in ("GET", "HEAD") else Role.WRITE
    return Requirement(role, unscoped=True)


def _txn_requirement(request: Request, principal: Principal, limits: Any) -> Requirement:
    """A transaction needs write when either branch writes, else read; a principal limited to
    prefixes must cover every key it compares or touches (a compare reads its key too)."""
    txn = requests.txn_from_post(request.body, limits)
    ops = txn.success + txn.failure
    role = Role.WRITE if any(op.op != "get" for op in ops) else Role.READ
    if not principal.prefixes:
        return Requirement(role)
    keys = dict.fromkeys([c.key for c in txn.compare] + [op.key for op in ops])
    return Requirement(role, keys=tuple(keys))


def unauthorized(message: str, invalid_token: bool = False) -> ApiError:
    challenge = REALM + (', error="invalid_token"' if invalid_token else "")
    return ApiError(401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": challenge})


def forbidden(message: str, **extra: Any) -> ApiError:
    return ApiError(403, ErrorCode.FORBIDDEN, message, extra=extra)


def decide(principal: Principal, need: Requirement) -> ApiError | None:
    """None when ``principal`` may do what ``need`` says; else the 403 that says why."""
    if principal.role < need.role:
        return forbidden(
            f"{principal.name!r} has role {principal.role.label}; this request needs role "
            f"{need.role.label}",
            needed_role=need.role.label,
        )
    if not principal.prefixes:
        return None
    allowed = list(principal.prefixes)
    if need.unscoped:
        return forbidden(
            f"{principal.name!r} is limited to key prefixes {allowed}; this endpoint needs a "
            "token without prefixes",
            needed_prefix="",
        )
    for key in need.keys:
        if not principal.covers_key(key):
            return forbidden(
                f"key {key!r} is outside the prefixes of {principal.name!r} ({allowed})",
                key=key,
                allowed_prefixes=allowed,
            )
    for prefix in need.ranges:
        if not principal.covers_range(prefix):
            return forbidden(
                f"listing prefix {prefix!r} leaves the prefixes of {principal.name!r} "
                f"({allowed}); list one of them or a prefix inside one",
                prefix=prefix,
                allowed_prefixes=allowed,
            )
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header; '' when the header is not one."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def _request_digest(request: Request) -> str:
    h = hashlib.sha256()
    for part in (request.method.encode(), request.raw_path.encode("latin-1"), request.body):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()


def sign_assertion(secret: bytes, principal: Principal, request: Request, now: float) -> str:
    claims = {
        "name": principal.name,
        "role": principal.role.label,
        "prefixes": list(principal.prefixes),
        "expires": now + ASSERTION_SECONDS,
        "request": _request_digest(request),
    }
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    return f"{ASSERTION_SCHEME} {payload}.{mac}"


def verify_assertion(secret: bytes, value: str, request: Request, now: float) -> Principal | None:
    """The principal a member's signed assertion names, if it is genuine, fresh and made for
    this very request; else None."""
    payload, _, mac = value.partition(".")
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
        principal = Principal(claims["name"], Role.parse(claims["role"]), tuple(claims["prefixes"]))
        fresh = float(claims["expires"]) >= now
        same = hmac.compare_digest(str(claims["request"]), _request_digest(request))
    except (ValueError, KeyError, TypeError):
        return None
    return principal if fresh and same else None


class ClientAuth:
    """The token table (re-read on SIGHUP) and the decisions made with it."""

    def __init__(
        self,
        settings: AuthSettings,
        table: TokenTable | None = None,
        cluster_secret: bytes | None = None,
    ) -> None:
        self.settings = settings
        self.cluster_secret = cluster_secret
        """Signs and verifies what followers forward for certificate principals."""
        if table is None and settings.token_file is not None:
            table = load_token_file(settings.token_file)  # at start a bad file stops the node
        self.table = table or TokenTable()
        role = settings.anonymous_role
        self._anonymous = Principal(ANONYMOUS, role) if role is not None else None

    def reload(self) -> bool:
        """Re-read the token file. A bad file is refused with a log line naming the problem,
        and the table in force stays; True when the new table took over."""
        path = self.settings.token_file
        if path is None:
            return False
        try:
            table = load_token_file(path)
        except TokenFileError as e:
            log.error(
                "token file refused; the previous tokens stay in force",
                extra={"fields": {"file": str(path), "problems": "; ".join(e.problems)}},
            )
            return False
        self.table = table
        log.info(
            "token file reloaded", extra={"fields": {"file": str(path), "entries": len(table)}}
        )
        return True

    def authenticate(
        self, authorization: str | None, cert_names: Iterable[str] = ()
    ) -> Principal | ApiError:
        token = bearer_token(authorization)
        if token == "":
            return unauthorized(
                "the Authorization header must be `Bearer <token>`", invalid_token=True
            )
        if token is not None:
            principal = self.table.by_token(token)
            if principal is None:
                return unauthorized("unknown or revoked token", invalid_token=True)
            return principal
        principal = self.table.by_certificate(cert_names)
        if principal is not None:
            return principal
        if self._anonymous is not None:
            return self._anonymous
        return unauthorized("this node needs a bearer token (Authorization: Bearer <token>)")

    def check(self, request: Request, limits: Any) -> ApiError | None:
        """None when ``request`` may proceed; else the 401 or 403 to answer. A request
        allowed for a certificate's principal gets a signed assertion as its
        ``Authorization``, so that the leader, if it is forwarded, authorizes the same one."""
        authorization = request.headers.get("authorization")
        principal: Principal | ApiError | None = None
        scheme, _, value = (authorization or "").partition(" ")
        if scheme == ASSERTION_SCHEME:
            if self.cluster_secret is not None:
                principal = verify_assertion(self.cluster_secret, value, request, time.time())
            if principal is None:
                return unauthorized("the forwarded assertion is not valid", invalid_token=True)
        else:
            principal = self.authenticate(authorization, request.tls_names)
        if isinstance(principal, ApiError):
            return principal
        if principal.role is Role.ADMIN and not principal.prefixes:
            # May do anything (the quick start's anonymous admin): skip working out the need.
            refused, admin = None, _is_admin(request.path)
        else:
            refused = decide(principal, requirement(request, principal, limits))
            admin = _is_admin(request.path)
        if admin:
            admin_log.log(
                logging.WARNING if refused else logging.INFO,
                "admin request refused" if refused else "admin request",
                extra={
                    "fields": {
                        "principal": principal.name,
                        "remote": request.remote,
                        "method": request.method,
                        "path": request.path,
                    }
                },
            )
        if (
            refused is None
            and authorization is None
            and self.cluster_secret is not None
            and self.table.by_certificate(request.tls_names) is not None
        ):
            request.headers["authorization"] = sign_assertion(
                self.cluster_secret, principal, request, time.time()
            )
        return refused

    def check_status(self, authorization: str | None, cert_names: Iterable[str]) -> ApiError | None:
        """For ``/status`` and ``/metrics`` on the health listener (``auth.status_role``)."""
        role = self.settings.status_role
        if role is None:
            return None
        principal = self.authenticate(authorization, cert_names)
        if isinstance(principal, ApiError):
            return principal
        return decide(principal, Requirement(role))
