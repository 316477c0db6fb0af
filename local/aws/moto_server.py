"""Run moto's server with Concord's SQS patch applied first (``python -m local.aws.moto_server``)."""

from __future__ import annotations

import sys

from local.aws import moto_patch


def main(argv: list[str] | None = None) -> None:
    moto_patch.apply()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
