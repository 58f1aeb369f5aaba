"""Where the browser tests save their screenshots (``test-artifacts/``, not committed)."""

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
