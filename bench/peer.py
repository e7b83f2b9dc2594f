"""The sequential peer: the rotation script a user would write from the vendor samples.

For each credential of the inventory, one at a time: a new password from `secrets`, one hvac
KV v2 write of it, then one vendor write with `requests` (Remotix `PUT`, Spark View
`GET /SERVER?action=update`). No pending candidate, no lease, no probe, no retry, no
read-back: the baseline `bench/run_bench.py` compares `rotate run` with. It reads the same
inventory CSV (plain `csv`) and TOML config as rotate; `VAULT_ADDR` and `VAULT_TOKEN` come
from the environment, and Spark View gateway passwords from each endpoint's
`gateway_password_env`.

    VAULT_ADDR=... VAULT_TOKEN=... python bench/peer.py INVENTORY --config CFG [--limit N]

It prints one JSON object: {"credentials": n, "failed": k, "elapsed_s": t} (the loop only,
without interpreter start-up), and exits 1 when a write failed. No password is printed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import secrets
import string
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

_ALPHABET = string.ascii_letters + string.digits + "-_.!#%+=@"
_KEYS = {"NEAR": "rxp", "RDP": "rdp", "APPLE": "apple", "VNC": "apple"}


def new_password(protocol: str) -> str:
    length = 8 if protocol == "VNC" else 20
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def vendor_write(
    session: requests.Session,
    endpoint: Mapping[str, Any],
    row: Mapping[str, str],
    password: str,
    gateway_md5: str | None,
) -> requests.Response:
    """The one write the vendor's manual shows, for this row's kind."""
    url = str(endpoint["url"]).rstrip("/")
    if row["kind"] == "server":
        params = {"id": row["target"], "action": "update", "user": row["username"], "pwd": password}
        if row.get("domain"):
            params["domain"] = row["domain"]
        if gateway_md5:
            params["gatewayPwd"] = gateway_md5
        return session.get(f"{url}/SERVER", params=params, timeout=10)
    protocol = row.get("protocol") or "RDP"
    key = _KEYS[protocol]
    body = {f"{key}.username": row["username"], f"{key}.password": password}
    if protocol == "RDP" and row.get("domain"):
        body[f"{key}.domain"] = row["domain"]
    if row["kind"] == "connection":
        return session.put(f"{url}/connection/{row['target']}/credentials", json=body, timeout=10)
    suffix = f"{protocol}_{row['port']}" if row.get("port") else protocol
    return session.put(f"{url}/computer/{row['target']}/{suffix}", json=body, timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="the first N rows only (0: all)")
    parser.add_argument("--prefix", default="peer", help="KV path prefix the peer writes under")
    args = parser.parse_args(argv)

    config = tomllib.loads(args.config.read_text())
    endpoints: dict[str, dict[str, Any]] = config["endpoints"]
    mount = str(config.get("vault", {}).get("mount", "secret"))
    gateways: dict[str, str] = {}
    for name, e in endpoints.items():
        env = e.get("gateway_password_env")
        if env and os.environ.get(env):
            gateways[name] = hashlib.md5(
                os.environ[env].encode(), usedforsecurity=False
            ).hexdigest()
    with args.inventory.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if args.limit > 0:
        rows = rows[: args.limit]

    vault = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    session = requests.Session()
    failed = 0
    started = time.perf_counter()
    for row in rows:
        password = new_password(row.get("protocol") or "RDP")
        suffix = row.get("protocol") or "RDP"
        if row.get("port"):
            suffix = f"{suffix}_{row['port']}"
        path = f"{args.prefix}/{row['endpoint']}/{row['kind']}/{row['target']}/{suffix}"
        secret = {"username": row["username"], "password": password}
        if row.get("domain"):
            secret["domain"] = row["domain"]
        try:
            vault.secrets.kv.v2.create_or_update_secret(path=path, secret=secret, mount_point=mount)
            answer = vendor_write(
                session, endpoints[row["endpoint"]], row, password, gateways.get(row["endpoint"])
            )
            if answer.status_code != 200:
                failed += 1
        except (requests.RequestException, hvac.exceptions.VaultError):
            failed += 1
    elapsed = time.perf_counter() - started
    print(json.dumps({"credentials": len(rows), "failed": failed, "elapsed_s": elapsed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
