"""Bastion's configuration: the typed model, the YAML loader and secret references.

Everything else in Bastion reads its settings through `BastionConfig`, obtained from
`load_config` (a file) or `config_from_mapping` (a mapping built in code).
"""

from __future__ import annotations

from bastion.config.loader import config_from_mapping, load_config
from bastion.config.model import (
    BastionConfig,
    Identities,
    Limits,
    Listeners,
    Logging,
    PostgresListener,
    SecretLocation,
    Target,
    TlsFiles,
    UpstreamCredential,
    UpstreamTlsMode,
    config_json_schema,
)
from bastion.config.secrets import SecretRef, resolve_secret

__all__ = [
    "BastionConfig",
    "Identities",
    "Limits",
    "Listeners",
    "Logging",
    "PostgresListener",
    "SecretLocation",
    "SecretRef",
    "Target",
    "TlsFiles",
    "UpstreamCredential",
    "UpstreamTlsMode",
    "config_from_mapping",
    "config_json_schema",
    "load_config",
    "resolve_secret",
]
