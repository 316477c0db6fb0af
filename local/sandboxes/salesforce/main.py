"""``python -m local.sandboxes.salesforce``: serve the sandbox org with seed data until Ctrl-C.

Without ``--public-key`` it makes a throwaway RSA key pair and writes the private key next to the CA
bundle, so a local client can sign its JWT assertions with it (the path is printed).
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.sandboxes.salesforce.notify import OutboundMessage
from local.sandboxes.salesforce.sandbox import SalesforceSandbox
from local.sandboxes.server import ca_bundle_path


def _key_pair() -> tuple[str, str]:
    """(private key path, public key PEM) of a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.NamedTemporaryFile(prefix="concord-sf-key-", suffix=".pem", delete=False) as handle:
        handle.write(private)
    Path(handle.name).chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return handle.name, public.decode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Salesforce sandbox with seed data.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--consumer-key", default="concord-local-consumer-key")
    parser.add_argument("--username", default="integration@concord.example")
    parser.add_argument("--public-key", help="PEM file of the connected app's certificate public key")
    parser.add_argument("--outbound-url", help="send Outbound Messages for Contact and Event here")
    args = parser.parse_args(argv)

    private_key_path = None
    if args.public_key:
        public_key = Path(args.public_key).read_text()
    else:
        private_key_path, public_key = _key_pair()
    sandbox = SalesforceSandbox(
        consumer_key=args.consumer_key, username=args.username, public_key_pem=public_key, port=args.port
    )
    sandbox.start()
    sandbox.seed()
    if args.outbound_url:
        for sobject in ("Contact", "Event"):
            sandbox.add_outbound_message(OutboundMessage(sobject, args.outbound_url, ("Id", "LastModifiedDate")))
    print(
        json.dumps(
            {
                "url": sandbox.url,
                "ca_bundle": ca_bundle_path(),
                "consumer_key": args.consumer_key,
                "username": args.username,
                "private_key": private_key_path,
                "audience": sandbox.audience,
            },
            indent=2,
        ),
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        sandbox.stop()
