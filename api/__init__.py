"""HTTP API over the engine (FastAPI); the serving half arrives with the real-time issue."""
