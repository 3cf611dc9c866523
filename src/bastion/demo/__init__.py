"""Everything `bastion demo` needs besides the proxy itself.

`pgserver` runs a disposable PostgreSQL server in a private directory (the test suite uses it
too); `sample` fills a database with a deterministic, realistic shop whose customers, notes and
credentials are full of the sensitive values Bastion is meant to protect. Nothing here is used by
the proxy at run time.
"""
