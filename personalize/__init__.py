"""The ``personalize`` command: the trainer's and the server's commands, and the demo that
runs both. The one place that imports both ``training`` and ``api``."""
