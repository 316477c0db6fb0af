"""`make run` syncs: run exactly as the README shows, its worker links the seeded records that match
(no duplicate), then syncs a change a user makes in Salesforce to the Microsoft 365 mailbox, and the
terminal tells each decision in one readable line while the functions' JSON logs go to a file.

The test talks to the printed endpoints over HTTP only, with the credentials `make run` stored in its
Secrets Manager (Salesforce's connected app) and the Graph sandbox's seeded app."""

from __future__ import annotations

import json
import re
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import jwt

from local.runner import LOCAL_PARAMETERS
from local.sandboxes import seed
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT
from tests.e2e.make_run import printed
from tests.e2e.processes import alive, descendants

if TYPE_CHECKING:
    from tests.e2e.make_run import MakeRun

GRACE = "grace@navy.example"  # seeded as a Contact in the org and in the M365 "Salesforce Sync" folder


class Salesforce:
    """The org as an API user sees it: logged in with the connected app's JWT bearer flow."""

    def __init__(self, output: str, tls: ssl.SSLContext) -> None:
        secrets = boto3.client("secretsmanager", endpoint_url=printed(output, "AWS_ENDPOINT_URL"))
        name = LOCAL_PARAMETERS["SalesforceJwtSecretArn"].rsplit(":secret:", 1)[1]
        app = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
        claims = {"iss": app["consumer_key"], "sub": app["username"], "aud": app["audience"], "exp": time.time() + 180}
        assertion = jwt.encode(claims, app["private_key"], algorithm="RS256")
        self.http = httpx.Client(base_url=printed(output, "Salesforce sandbox"), verify=tls, timeout=10)
        token = self.http.post(
            "/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        self.api = str(self.http.get("/services/data").json()[-1]["url"])

    def query(self, soql: str) -> list[dict[str, Any]]:
        answer = self.http.get(f"{self.api}/query", params={"q": soql})
        answer.raise_for_status()
        return list(answer.json()["records"])

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        self.http.patch(f"{self.api}/sobjects/{sobject}/{record_id}", json=fields).raise_for_status()


class Outlook:
    """The M365 mailbox through Graph, as the seeded app (client credentials)."""

    def __init__(self, output: str, tls: ssl.SSLContext) -> None:
        base = printed(output, "Microsoft Graph sandbox")
        login = base.removesuffix("/v1.0")
        token = httpx.post(
            f"{login}/{SEED_TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": SEED_CLIENT_ID,
                "client_secret": SEED_CLIENT_SECRET,
                "scope": "https://graph.microsoft.com/.default",
            },
            verify=tls,
            timeout=10,
        )
        token.raise_for_status()
        self.http = httpx.Client(
            base_url=f"{base}/users/{seed.M365_USER}",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            verify=tls,
            timeout=10,
        )

    def update_contact(self, contact_id: str, fields: dict[str, Any]) -> None:
        self.http.patch(f"/contacts/{contact_id}", json=fields).raise_for_status()

    def sync_folder_contacts(self, email: str) -> list[dict[str, Any]]:
        folders = self.http.get("/contactFolders").json()["value"]
        folder = next(f["id"] for f in folders if f["displayName"] == "Salesforce Sync")
        contacts = self.http.get(f"/contactFolders/{folder}/contacts", params={"$top": 100}).json()["value"]
        return [c for c in contacts if any(a["address"] == email for a in c.get("emailAddresses", []))]


def test_make_run_links_the_seeded_records_and_syncs_a_salesforce_edit_to_the_mailbox(make_run: MakeRun) -> None:
    started_at = time.monotonic()
    make_run.wait_for("ready")
    output = make_run.output
    started = descendants(make_run.process.pid)
    tls = ssl.create_default_context(cafile=printed(output, "sandbox CA bundle"))
    salesforce, outlook = Salesforce(output, tls), Outlook(output, tls)
    (grace,) = salesforce.query(f"SELECT Id FROM Contact WHERE Email = '{GRACE}'")

    # THEN the first sync links Outlook's Grace Hopper to the org's, told in one line (from whichever side's
    # notice a worker took first: the first sync queues both sides' records)
    either_side = rf"(graph \S+ ↔ {grace['Id']}|salesforce {grace['Id']} ↔ \S+)"
    make_run.wait_for_line(rf"^\d\d:\d\d:\d\d synced +contact +conn-m365 +{either_side}: .*link", 30)
    # and makes no second Grace: the one Contact is the one the mailbox's is linked to
    assert salesforce.query(f"SELECT Id FROM Contact WHERE Email = '{GRACE}'") == [grace]
    assert len(outlook.sync_folder_contacts(GRACE)) == 1

    # WHEN a user gives her a new title in Salesforce
    salesforce.update("Contact", grace["Id"], {"Title": "Commodore"})

    # THEN the worker tells that it wrote it to the mailbox, and the mailbox has it
    make_run.wait_for_line(
        rf"^\d\d:\d\d:\d\d synced +contact +conn-m365 +salesforce {grace['Id']} ↔ \S+: mailbox update .*title", 30
    )
    (contact,) = outlook.sync_folder_contacts(GRACE)
    assert contact["jobTitle"] == "Commodore"
    assert salesforce.query(f"SELECT Id FROM Contact WHERE Email = '{GRACE}'") == [grace]

    # and the channels are alive: Graph holds live subscriptions pointing at the running webhooks
    graph_admin = httpx.Client(base_url=printed(output, "Microsoft Graph sandbox").removesuffix("/v1.0"), verify=tls)
    subscriptions = graph_admin.get("/_sandbox/state").json()["subscriptions"]
    assert subscriptions and all(s["live"] for s in subscriptions), subscriptions

    # WHEN the Graph sandbox drops the notifications of an edit made in Outlook
    graph_admin.post("/_sandbox/faults", json={"notifications": {"drop": 50}}).raise_for_status()  # every push
    outlook.update_contact(contact["id"], {"department": "Navy Reserve"})

    # THEN the next catch-up (every minute here) finds it and the worker writes it to Salesforce
    make_run.wait_for_line(
        rf"^\d\d:\d\d:\d\d synced +contact +conn-m365 +graph \S+ ↔ {grace['Id']}: salesforce update .*department",
        150,
    )
    (repaired,) = salesforce.query(f"SELECT Id, Department FROM Contact WHERE Email = '{GRACE}'")
    assert repaired["Department"] == "Navy Reserve"

    # and the terminal holds readable lines only: the functions' JSON went to the printed file
    log_file = Path(printed(output, "function logs (JSON lines)"))
    assert not [line for line in make_run.lines if line.lstrip().startswith("{")], make_run.output
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(r.get("message") == "batch synced" and r.get("synced", 0) > 0 for r in records)
    assert re.search(rf"^concord: the functions' JSON logs go to {re.escape(str(log_file))}$", output, re.M)

    # WHEN Ctrl-C: nothing is left running
    make_run.ctrl_c()
    assert "concord: stopped cleanly" in make_run.output, make_run.output
    assert not alive(started), f"left running:\n{make_run.output}"
    assert time.monotonic() - started_at < 240
