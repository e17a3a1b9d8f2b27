"""Where tools execute: the Sandbox protocol and its implementations."""
