"""The agent's tools. See base.py for the seam."""
