"""Connection plumbing shared by Bastion's stores (audit records, approval state).

`sqlite` holds what every embedded SQLite store needs (a private file, one WAL connection per
thread, write transactions, numbered migrations); `postgres` what every PostgreSQL store needs
(connection strings that never reach a message, one connection per thread replaced when it
breaks, driver errors wrapped into the store's own error, numbered migrations in a schema under
an advisory lock). The stores keep their tables, queries and row mapping. This package knows
no store: it must not import `bastion.audit` or `bastion.approvals`, and this file imports
neither submodule, so psycopg loads only where a PostgreSQL store is used.
"""
