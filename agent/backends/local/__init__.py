"""The local backend: the M2 network in PyTorch."""
