"""The simulator against tfserving-wire.md, through the real TfsClient and raw gRPC stubs.

Every server here polls the file system every 0.05 s and retries failed loads 2 times,
0.05 s apart, so nothing waits for long; every wait is a poll with a deadline. The fixtures
(conftest.py) override the suite's `sim` with such a server, for this directory only.
"""
