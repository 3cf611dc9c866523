"""Statement analysis: PostgreSQL's own grammar (pglast) turned into StatementInfo values.

`bastion.sql.analyze.analyze(sql)` is the entry point; `bastion.sql.statement` holds the data
it returns, `bastion.sql.kinds` and `bastion.sql.flags` the names it uses (documented in
docs/statements.md). Pure: no sockets, no asyncio.
"""
