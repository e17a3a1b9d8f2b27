"""Replaying SWE-style tasks in Docker sandboxes."""
