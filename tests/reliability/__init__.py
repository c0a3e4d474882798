"""Faults injected into real processes: a frozen or killed node, a killed API, several API
processes electing one indexer. Run by `make test-reliability` (part of `make test`)."""
