"""EtcdStore when etcd is down or paused (fail fast, end at the call deadline, recover), over
TLS with client certificates or password authentication, and LocalEtcd's own restarts.

Tests that stop, pause or compact etcd use a private instance (private_etcd, etcd_factory);
the rest share the session etcd and keep apart through the `prefix` fixture.
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable

import pytest

from tests.helpers import make_tls_files, wait_until
from tfleet.etcd_local import LocalEtcd, free_port
from tfleet.store import (
    EtcdSettings,
    EtcdStore,
    StoreError,
    StoreUnavailable,
)
from tests.integration.store_support import FAST_TIMEOUT, WAIT, store_on


def test_calls_fail_fast_while_etcd_is_down_and_the_same_store_recovers(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    store.put(prefix + "k", b"1")
    private_etcd.stop()
    for _ in range(3):  # the first error, then pyetcd's "failed endpoint" window
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=private_etcd.client_url) as error:
            store.get(prefix + "k")
        assert time.monotonic() - started < FAST_TIMEOUT + 1.0
        assert f"get {prefix + 'k'!r}" in str(error.value)

    private_etcd.start()
    started = time.monotonic()
    kv = wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="same store recovers")
    assert kv.value == b"1"
    assert time.monotonic() - started < 5.0  # not pyetcd's 300 s failed-node quarantine


def test_calls_to_a_paused_etcd_end_at_the_call_deadline(private_etcd: LocalEtcd, private_store: EtcdStore, prefix: str) -> None:
    store = private_store
    store.put(prefix + "k", b"1")
    private_etcd.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="deadline"):
            store.put(prefix + "k", b"2")
        elapsed = time.monotonic() - started
        assert FAST_TIMEOUT * 0.9 <= elapsed < FAST_TIMEOUT + 1.5
    finally:
        private_etcd.resume()
    wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="store recovers")


def test_store_constructor_does_not_need_etcd() -> None:
    with EtcdStore(EtcdSettings((f"127.0.0.1:{free_port()}",), call_timeout=FAST_TIMEOUT)) as store:
        with pytest.raises(StoreUnavailable, match="list '/x/'"):
            store.list_prefix("/x/")


# -- TLS and authentication -----------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def test_tls_with_client_certificates(etcd_factory: Callable[..., LocalEtcd], tls, prefix: str) -> None:  # noqa: ANN001
    server = etcd_factory(cert_file=tls.server_cert, key_file=tls.server_key, trusted_ca_file=tls.ca_cert, client_cert_auth=True)
    assert server.client_url.startswith("https://")

    with store_on(server, ca_cert=str(tls.ca_cert), cert=str(tls.client_cert), key=str(tls.client_key)) as store:
        revision = store.put(prefix + "k", b"over tls")
        assert store.get(prefix + "k").mod_revision == revision  # type: ignore[union-attr]

    with store_on(server, ca_cert=str(tls.ca_cert)) as anonymous:
        with pytest.raises(StoreError):
            anonymous.get(prefix + "k")


def test_password_auth_over_tls_logs_in_again_after_tokens_are_lost(
    etcd_factory: Callable[..., LocalEtcd],
    tls,
    prefix: str,
    caplog: pytest.LogCaptureFixture,  # noqa: ANN001
) -> None:
    server = etcd_factory(cert_file=tls.server_cert, key_file=tls.server_key)  # TLS, no client certs
    cacert = f"--cacert={tls.ca_cert}"
    server.etcdctl(cacert, "user", "add", "root", "--new-user-password=s3cret", "--interactive=false")
    server.etcdctl(cacert, "auth", "enable")

    with store_on(server, ca_cert=str(tls.ca_cert), user="root", password="s3cret") as store:
        store.put(prefix + "k", b"1")
        # a watch stream carries the same token (tfleet/store/watch_stream.py opens it itself)
        seen: list[bytes] = []
        watch = store.watch_prefix(prefix, store.list_prefix(prefix).revision + 1, lambda events: seen.extend(e.value for e in events), lambda snapshot: None)
        try:
            store.put(prefix + "w", b"watched")
            wait_until(lambda: seen == [b"watched"], WAIT, message=f"the watch saw the put; saw {seen}")
        finally:
            watch.cancel()
        server.restart()  # etcd forgets its simple tokens: the client's token is now invalid
        with caplog.at_level(logging.INFO, logger="tfleet.store"):
            kv = wait_until(lambda: store.get(prefix + "k"), WAIT, ignore=(StoreUnavailable,), message="store logs in again")
        assert kv.value == b"1"
        assert "logging in again" in caplog.text

    with store_on(server, ca_cert=str(tls.ca_cert), user="root", password="wrong") as wrong:
        with pytest.raises(StoreError, match="login") as error:
            wrong.get(prefix + "k")
        assert not isinstance(error.value, StoreUnavailable)


def test_local_etcd_keeps_its_ports_and_log(private_etcd: LocalEtcd) -> None:
    url = private_etcd.client_url
    private_etcd.restart()
    assert private_etcd.client_url == url
    assert b"k" not in private_etcd.etcdctl("get", "--prefix", "/nothing/").stdout
    assert pathlib.Path(private_etcd.log_path).stat().st_size > 0
