"""The one error of the catalog package: a target's catalog could not be read."""

from __future__ import annotations

from bastion.errors import UpstreamUnavailable


class CatalogUnavailable(UpstreamUnavailable):
    """Connecting to a target or reading its catalog failed. The message names the target and
    its address, never a password or a connection string."""
