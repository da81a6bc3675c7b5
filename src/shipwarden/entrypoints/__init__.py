"""Entry points: CLI and HTTP."""
