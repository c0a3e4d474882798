"""Opposition lists: Bloctel, the US Do-Not-Call registry, the UK TPS, and companies' own lists.

A snapshot is a sorted array of E.164 numbers as unsigned 64-bit integers (15 digits always
fit), written once as ``.npy`` in the data directory and memory-mapped on load: 20 million
numbers take 160 MB of file-backed pages the processes of one machine share, and membership
is a binary search (``np.searchsorted``), vectorised for bulk scrubs. Metadata (region,
source, fetch time, maximum age, counts) lives in SQL, so every process sees the same current
version. Snapshots are immutable: a delta writes a new version whose parent is the old one,
so the version a decision records names exactly the numbers it consulted.

Modules: ``formats`` (reading list files), ``normalise`` (E.164 integers, over processes),
``arrays`` (membership and deltas of sorted arrays), ``store`` (the metadata table),
``files`` (the snapshot files), ``cache`` (the current snapshots the checks read) and
``importer`` (a list file becoming the current snapshot).

Example:
    >>> cache = OppositionCache(engine=engine, directory=Path(".quota-ledger/lists"))
    >>> import_file(Path("dnc.txt"), ListImport(region="US", fmt=ListFormat.DNC), cache=cache)
    >>> cache.status(contact, company_id=1).listed
"""
