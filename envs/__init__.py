"""Gymnasium environments and the simulated RLVR plant."""
