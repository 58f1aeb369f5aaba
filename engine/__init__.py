"""Pure personalization core shared by the offline trainer and the API (no I/O config, no env)."""
