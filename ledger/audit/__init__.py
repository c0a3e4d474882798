"""The audit: the usage log as an RFC 9162 Merkle tree, its anchors on chain, and what a
regulator runs to check both without trusting the operator."""
