"""``python -m local.sandboxes.salesforce`` serves the seeded org and prints how to reach it."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time

import httpx
import jwt


def test_main_serves_the_seeded_org() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "local.sandboxes.salesforce", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not lines or lines[-1] != "}\n":
            line = process.stdout.readline()
            assert line, "the sandbox exited before printing its address"
            lines.append(line)
        info = json.loads("".join(lines))
        with open(info["private_key"]) as handle:
            private_key = handle.read()
        assertion = jwt.encode(
            {
                "iss": info["consumer_key"],
                "sub": info["username"],
                "aud": info["audience"],
                "exp": int(time.time()) + 60,
            },
            private_key,
            algorithm="RS256",
        )
        with httpx.Client(verify=ssl.create_default_context(cafile=info["ca_bundle"])) as http:
            token = http.post(
                f"{info['url']}/services/oauth2/token",
                data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            ).json()["access_token"]
            answer = http.get(
                f"{info['url']}/services/data/v60.0/query",
                params={"q": "SELECT COUNT() FROM Contact"},
                headers={"Authorization": f"Bearer {token}"},
            )
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert answer.json() == {"totalSize": 5, "done": True, "records": []}
