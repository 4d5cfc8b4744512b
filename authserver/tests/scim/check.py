"""scim2-tester (PyPI) against a running server: every check it has.

Usage: check.py BASE_URL TOKEN
Prints one line per check and, last, a JSON summary of the counts by
status; exits 1 when any check ends in ERROR or CRITICAL.
"""

import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = SyncSCIMClient(http)
    results = check_server(client)
    counts: dict[str, int] = {}
    failed = 0
    for r in results:
        counts[r.status.name] = counts.get(r.status.name, 0) + 1
        if r.status in (Status.ERROR, Status.CRITICAL):
            failed += 1
        reason = f" -- {r.reason}" if r.reason else ""
        print(f"{r.status.name:10} {r.title}{reason}")
    print(json.dumps({"checks": len(results), "by_status": counts}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
