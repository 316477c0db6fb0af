"""Ingress: authenticate a sender's request and parse it into change notices.

One module per sender holds pure functions (no I/O) that raise :class:`~concord.ingress.errors.Rejected`:
:mod:`.salesforce_outbound`, :mod:`.salesforce_cdc`, :mod:`.graph`, :mod:`.google`. :mod:`.apps` wires
them to Powertools (routes, idempotency) and the queue, one module per webhook function, so a function
imports only what its own sender needs (cold start).
"""
