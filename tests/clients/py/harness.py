"""Shared by the postgrest-py conformance scripts (conformance.py, writes.py): the client
connected to the server named on the command line, and the checks that count passes and stop
at the first mismatch.

A script imports it (`from harness import ...`; Python puts the script's own directory first
on the module path), runs its checks and ends with `done()`.
"""

import sys

from postgrest import APIError, SyncPostgrestClient

checks = 0


def connect():
    """The client for `BASE_URL TOKEN` given on the command line."""
    base, token = sys.argv[1], sys.argv[2]
    client = SyncPostgrestClient(base)
    client.auth(token)
    return client


def check(name, got, want):
    """Counts a check; exits non-zero on a mismatch."""
    global checks
    checks += 1
    if got != want:
        print(f"FAIL {name}:\n  got  {got!r}\n  want {want!r}", file=sys.stderr)
        sys.exit(1)


def expect_error(name, build, code):
    """Executes the request `build()` returns; it must fail with APIError `code`."""
    try:
        build().execute()
        check(name, "no error", code)
    except APIError as e:
        check(name, e.code, code)


def done():
    """The line the Rust test looks for."""
    print(f"{checks} passed, 0 failed")
