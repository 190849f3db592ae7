"""The systems of the peer comparison, each behind :class:`bench.peering.PeerSystem`."""
