"""Several Bastion instances sharing one PostgreSQL store keep a single linear chain."""

from __future__ import annotations

import threading

from bastion.audit.errors import ChainConflict
from bastion.audit.keys import AuditSigner
from bastion.audit.postgres_store import PostgresAuditStore
from bastion.audit.record import ChainHead, chain_record
from bastion.audit.verify import verify_chain
from bastion.audit.writer import AuditWriter
from bastion.pipeline.events import StatementEvent

from .conftest import BASE_TS


def event(instance: str, index: int) -> StatementEvent:
    return StatementEvent(
        session_id=instance,
        user=instance,
        target="shop",
        protocol="simple",
        kind="select",
        statement="SELECT 1",
        fingerprint="f",
        decision="allow",
        rule="r",
        outcome="ok",
        rows=index,
    )


def test_two_writers_in_parallel_keep_one_linear_chain(
    audit_pg_dsn: str, pg_schema: str, signer: AuditSigner
) -> None:
    stores = [PostgresAuditStore(audit_pg_dsn, schema=pg_schema) for _ in range(2)]
    writers = [
        AuditWriter(store, signer, batch_size=20, batch_delay=0, checkpoint_every=50).start()
        for store in stores
    ]
    start = threading.Barrier(2)

    def produce(writer: AuditWriter, instance: str) -> None:
        start.wait()
        for index in range(400):
            assert writer.submit(event(instance, index))

    threads = [
        threading.Thread(target=produce, args=(writer, f"instance{n}"))
        for n, writer in enumerate(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for writer in writers:
            assert writer.close() == 0
        assert sum(writer.conflicts for writer in writers) > 0, "the writers never raced"
        # Races end in ChainConflict under the head lock, never in a failed (duplicate) insert.
        assert [writer.failures for writer in writers] == [0, 0]
        report = verify_chain(stores[0], signer.public_key)
        assert report.ok, report.summary()
        written = stores[0].search(kind="statement")
        assert len(written) == 800
        for n in range(2):
            rows = [r.payload["rows"] for r in written if r.payload["user"] == f"instance{n}"]
            assert rows == list(range(400))
        seqs = [record.seq for record in stores[0].iterate()]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        for store in stores:
            store.close()


def test_racing_appends_from_the_same_head_never_fork(audit_pg_dsn: str, pg_schema: str) -> None:
    """Many threads append at once, each chained to the head it read: one wins per seq."""
    stores = [PostgresAuditStore(audit_pg_dsn, schema=pg_schema) for _ in range(4)]
    conflicts = [0] * len(stores)
    start = threading.Barrier(len(stores))

    def race(n: int) -> None:
        store = stores[n]
        start.wait()
        for index in range(25):
            while True:
                head = store.head()
                record = chain_record(
                    ChainHead(head.seq, head.hash), BASE_TS, "admin", {"n": n, "i": index}
                )
                try:
                    store.append([record])
                    break
                except ChainConflict:
                    conflicts[n] += 1

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sum(conflicts) > 0
        records = list(stores[0].iterate())
        assert [r.seq for r in records] == list(range(1, 101))
        assert verify_chain(stores[0], None).ok
    finally:
        for store in stores:
            store.close()
