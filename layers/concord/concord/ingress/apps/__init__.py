"""One module per webhook function, wiring a sender's parser to Powertools and the queue.

Each exposes a class built once at cold start from :class:`~concord.settings.WebhookSettings`
(dependencies injectable for tests) with one entry point, so ``functions/<name>/app.py`` stays thin.
"""
