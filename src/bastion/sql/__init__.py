"""Statement analysis: PostgreSQL's own grammar (pglast) turned into StatementInfo values.
Pure: no sockets, no asyncio."""
