"""Backends (remote endpoints, local torch model) and the M2 format layer they share."""
