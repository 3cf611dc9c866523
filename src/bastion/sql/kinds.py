"""Naming statements: parse-tree node -> (`kind`, `object_type`).

Every statement node libpg_query produces has an entry here. A node type missing from the
tables (a newer server's statement, say) is named `other` and the analyzer adds the
`unclassified` flag, which policy denies by default: nothing is ever guessed harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from bastion.sql.walker import Node

OTHER = "other"
UNKNOWN = "unknown"

# ObjectType enum -> the object word used in kinds (create_<object>, drop_<object>, ...).
OBJECT_NAMES: dict[str, str] = {
    "OBJECT_ACCESS_METHOD": "access_method",
    "OBJECT_AGGREGATE": "aggregate",
    "OBJECT_AMOP": "operator_class_member",
    "OBJECT_AMPROC": "operator_class_member",
    "OBJECT_ATTRIBUTE": "type",
    "OBJECT_CAST": "cast",
    "OBJECT_COLUMN": "table",
    "OBJECT_COLLATION": "collation",
    "OBJECT_CONVERSION": "conversion",
    "OBJECT_DATABASE": "database",
    "OBJECT_DEFAULT": "table",
    "OBJECT_DEFACL": "default_privileges",
    "OBJECT_DOMAIN": "domain",
    "OBJECT_DOMCONSTRAINT": "domain",
    "OBJECT_EVENT_TRIGGER": "event_trigger",
    "OBJECT_EXTENSION": "extension",
    "OBJECT_FDW": "foreign_data_wrapper",
    "OBJECT_FOREIGN_SERVER": "foreign_server",
    "OBJECT_FOREIGN_TABLE": "foreign_table",
    "OBJECT_FUNCTION": "function",
    "OBJECT_INDEX": "index",
    "OBJECT_LANGUAGE": "language",
    "OBJECT_LARGEOBJECT": "large_object",
    "OBJECT_MATVIEW": "materialized_view",
    "OBJECT_OPCLASS": "operator_class",
    "OBJECT_OPERATOR": "operator",
    "OBJECT_OPFAMILY": "operator_family",
    "OBJECT_PARAMETER_ACL": "parameter",
    "OBJECT_POLICY": "policy",
    "OBJECT_PROCEDURE": "procedure",
    "OBJECT_PUBLICATION": "publication",
    "OBJECT_PUBLICATION_NAMESPACE": "publication",
    "OBJECT_PUBLICATION_REL": "publication",
    "OBJECT_ROLE": "role",
    "OBJECT_ROUTINE": "routine",
    "OBJECT_RULE": "rule",
    "OBJECT_SCHEMA": "schema",
    "OBJECT_SEQUENCE": "sequence",
    "OBJECT_SUBSCRIPTION": "subscription",
    "OBJECT_STATISTIC_EXT": "statistics",
    "OBJECT_TABCONSTRAINT": "table",
    "OBJECT_TABLE": "table",
    "OBJECT_TABLESPACE": "tablespace",
    "OBJECT_TRANSFORM": "transform",
    "OBJECT_TRIGGER": "trigger",
    "OBJECT_TSCONFIGURATION": "text_search_configuration",
    "OBJECT_TSDICTIONARY": "text_search_dictionary",
    "OBJECT_TSPARSER": "text_search_parser",
    "OBJECT_TSTEMPLATE": "text_search_template",
    "OBJECT_TYPE": "type",
    "OBJECT_USER_MAPPING": "user_mapping",
    "OBJECT_VIEW": "view",
}

# Object types whose names are relations (so they appear in tables_written when changed).
RELATION_OBJECTS = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_INDEX",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)
# Object types named "<relation>.<name>" (or "<relation>.<column>"): the relation is changed.
ON_RELATION_OBJECTS = frozenset(
    {"OBJECT_COLUMN", "OBJECT_TRIGGER", "OBJECT_POLICY", "OBJECT_RULE", "OBJECT_TABCONSTRAINT"}
)


def object_name(object_type: object) -> str:
    """`OBJECT_MATVIEW` -> `materialized_view`; an unknown value keeps its own name."""
    text = str(object_type or "OBJECT_UNKNOWN")
    return OBJECT_NAMES.get(text, text.removeprefix("OBJECT_").lower())


# Statements whose kind does not depend on their content: node type -> (kind, object_type).
FIXED_KINDS: dict[str, tuple[str, str | None]] = {
    "SelectStmt": ("select", None),
    "InsertStmt": ("insert", None),
    "UpdateStmt": ("update", None),
    "DeleteStmt": ("delete", None),
    "MergeStmt": ("merge", None),
    "ReturnStmt": ("select", None),
    "PLAssignStmt": ("select", None),
    "TruncateStmt": ("truncate", None),
    "CopyStmt": ("copy", None),
    "VariableShowStmt": ("show", None),
    "TransactionStmt": ("transaction", None),
    "DoStmt": ("do", None),
    "CallStmt": ("call", None),
    "ExplainStmt": ("explain", None),
    "PrepareStmt": ("prepare", None),
    "ExecuteStmt": ("execute", None),
    "DeallocateStmt": ("deallocate", None),
    "DeclareCursorStmt": ("declare", None),
    "ClosePortalStmt": ("close", None),
    "ListenStmt": ("listen", None),
    "UnlistenStmt": ("unlisten", None),
    "NotifyStmt": ("notify", None),
    "ClusterStmt": ("cluster", None),
    "ReindexStmt": ("reindex", None),
    "CheckPointStmt": ("checkpoint", None),
    "LockStmt": ("lock", None),
    "DiscardStmt": ("discard", None),
    "LoadStmt": ("load", None),
    "AlterSystemStmt": ("alter_system", None),
    "ConstraintsSetStmt": ("set_constraints", None),
    "ReassignOwnedStmt": ("reassign_owned", None),
    "DropOwnedStmt": ("drop_owned", None),
    "RefreshMatViewStmt": ("refresh_materialized_view", "materialized_view"),
    "ImportForeignSchemaStmt": ("import_foreign_schema", "foreign_table"),
    "CreateStmt": ("create_table", "table"),
    "CreateForeignTableStmt": ("create_foreign_table", "foreign_table"),
    "ViewStmt": ("create_view", "view"),
    "IndexStmt": ("create_index", "index"),
    "CreateSeqStmt": ("create_sequence", "sequence"),
    "AlterSeqStmt": ("alter_sequence", "sequence"),
    "CreateSchemaStmt": ("create_schema", "schema"),
    "CreatedbStmt": ("create_database", "database"),
    "AlterDatabaseStmt": ("alter_database", "database"),
    "AlterDatabaseSetStmt": ("alter_database", "database"),
    "AlterDatabaseRefreshCollStmt": ("alter_database", "database"),
    "DropdbStmt": ("drop_database", "database"),
    "CreateRoleStmt": ("create_role", "role"),
    "AlterRoleStmt": ("alter_role", "role"),
    "AlterRoleSetStmt": ("alter_role", "role"),
    "DropRoleStmt": ("drop_role", "role"),
    "CreateTrigStmt": ("create_trigger", "trigger"),
    "CreateEventTrigStmt": ("create_event_trigger", "event_trigger"),
    "AlterEventTrigStmt": ("alter_event_trigger", "event_trigger"),
    "CreateExtensionStmt": ("create_extension", "extension"),
    "AlterExtensionStmt": ("alter_extension", "extension"),
    "AlterExtensionContentsStmt": ("alter_extension", "extension"),
    "CreateFdwStmt": ("create_foreign_data_wrapper", "foreign_data_wrapper"),
    "AlterFdwStmt": ("alter_foreign_data_wrapper", "foreign_data_wrapper"),
    "CreateForeignServerStmt": ("create_foreign_server", "foreign_server"),
    "AlterForeignServerStmt": ("alter_foreign_server", "foreign_server"),
    "CreateUserMappingStmt": ("create_user_mapping", "user_mapping"),
    "AlterUserMappingStmt": ("alter_user_mapping", "user_mapping"),
    "DropUserMappingStmt": ("drop_user_mapping", "user_mapping"),
    "CreatePolicyStmt": ("create_policy", "policy"),
    "AlterPolicyStmt": ("alter_policy", "policy"),
    "CreatePublicationStmt": ("create_publication", "publication"),
    "AlterPublicationStmt": ("alter_publication", "publication"),
    "CreateSubscriptionStmt": ("create_subscription", "subscription"),
    "AlterSubscriptionStmt": ("alter_subscription", "subscription"),
    "DropSubscriptionStmt": ("drop_subscription", "subscription"),
    "CreateTableSpaceStmt": ("create_tablespace", "tablespace"),
    "DropTableSpaceStmt": ("drop_tablespace", "tablespace"),
    "AlterTableSpaceOptionsStmt": ("alter_tablespace", "tablespace"),
    "AlterTableMoveAllStmt": ("alter_tablespace", "tablespace"),
    "CreateAmStmt": ("create_access_method", "access_method"),
    "CreateCastStmt": ("create_cast", "cast"),
    "CreateConversionStmt": ("create_conversion", "conversion"),
    "CreateDomainStmt": ("create_domain", "domain"),
    "AlterDomainStmt": ("alter_domain", "domain"),
    "CompositeTypeStmt": ("create_type", "type"),
    "CreateEnumStmt": ("create_type", "type"),
    "CreateRangeStmt": ("create_type", "type"),
    "AlterEnumStmt": ("alter_type", "type"),
    "AlterTypeStmt": ("alter_type", "type"),
    "CreateOpClassStmt": ("create_operator_class", "operator_class"),
    "CreateOpFamilyStmt": ("create_operator_family", "operator_family"),
    "AlterOpFamilyStmt": ("alter_operator_family", "operator_family"),
    "AlterOperatorStmt": ("alter_operator", "operator"),
    "CreatePLangStmt": ("create_language", "language"),
    "CreateStatsStmt": ("create_statistics", "statistics"),
    "AlterStatsStmt": ("alter_statistics", "statistics"),
    "AlterTSConfigurationStmt": ("alter_text_search_configuration", "text_search_configuration"),
    "AlterTSDictionaryStmt": ("alter_text_search_dictionary", "text_search_dictionary"),
    "AlterCollationStmt": ("alter_collation", "collation"),
    "CreateTransformStmt": ("create_transform", "transform"),
    "AlterDefaultPrivilegesStmt": ("alter_default_privileges", "default_privileges"),
    "RuleStmt": ("create_rule", "rule"),
    "SecLabelStmt": ("security_label", None),  # object_type from the statement
    "CommentStmt": ("comment", None),  # object_type from the statement
}


def _select(body: Node) -> tuple[str, str | None]:
    # SELECT ... INTO new_table; in a set operation the INTO sits in the leftmost arm.
    while body.get("op", "SETOP_NONE") != "SETOP_NONE" and isinstance(body.get("larg"), dict):
        body = body["larg"]
    if body.get("intoClause"):
        return "create_table_as", "table"
    return "select", None


def _create_table_as(body: Node) -> tuple[str, str | None]:
    if body.get("objtype") == "OBJECT_MATVIEW":
        return "create_materialized_view", "materialized_view"
    return "create_table_as", "table"


def _by_object(prefix: str, field: str) -> Callable[[Node], tuple[str, str | None]]:
    def classify(body: Node) -> tuple[str, str | None]:
        name = object_name(body.get(field))
        return f"{prefix}_{name}", name

    return classify


def _rename(body: Node) -> tuple[str, str | None]:
    rename_type = body.get("renameType")
    if rename_type in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT"):
        # A column or constraint belongs to a table, view, ...: that relation is altered.
        name = object_name(body.get("relationType") or "OBJECT_TABLE")
        if name == "access_method":  # relationType left at its zero value
            name = "table"
    else:
        name = object_name(rename_type)
    return f"alter_{name}", name


def _variable_set(body: Node) -> tuple[str, str | None]:
    name = str(body.get("name", "")).lower()
    if name == "role":
        return "set_role", None  # SET ROLE, SET ROLE NONE, RESET ROLE
    if name == "session_authorization":
        return "set_session_authorization", None
    if body.get("kind") in ("VAR_RESET", "VAR_RESET_ALL"):
        return "reset", None
    return "set", None


def _vacuum(body: Node) -> tuple[str, str | None]:
    return ("vacuum" if body.get("is_vacuumcmd") else "analyze"), None


def _fetch(body: Node) -> tuple[str, str | None]:
    return ("move" if body.get("ismove") else "fetch"), None


def _grant(body: Node) -> tuple[str, str | None]:
    return ("grant" if body.get("is_grant") else "revoke"), object_name(body.get("objtype"))


def _grant_role(body: Node) -> tuple[str, str | None]:
    return ("grant_role" if body.get("is_grant") else "revoke_role"), "role"


def _function(prefix: str) -> Callable[[Node], tuple[str, str | None]]:
    def classify(body: Node) -> tuple[str, str | None]:
        name = "procedure" if body.get("is_procedure") else "function"
        return f"{prefix}_{name}", name

    return classify


def _object_typed(kind: str, field: str) -> Callable[[Node], tuple[str, str | None]]:
    def classify(body: Node) -> tuple[str, str | None]:
        return kind, object_name(body.get(field))

    return classify


VARIABLE_KINDS: dict[str, Callable[[Node], tuple[str, str | None]]] = {
    "SelectStmt": _select,
    "CreateTableAsStmt": _create_table_as,
    "AlterTableStmt": _by_object("alter", "objtype"),
    "DropStmt": _by_object("drop", "removeType"),
    "RenameStmt": _rename,
    "AlterObjectSchemaStmt": _by_object("alter", "objectType"),
    "AlterOwnerStmt": _by_object("alter", "objectType"),
    "AlterObjectDependsStmt": _by_object("alter", "objectType"),
    "DefineStmt": _by_object("create", "kind"),
    "AlterFunctionStmt": _by_object("alter", "objtype"),
    "CreateFunctionStmt": _function("create"),
    "VariableSetStmt": _variable_set,
    "VacuumStmt": _vacuum,
    "FetchStmt": _fetch,
    "GrantStmt": _grant,
    "GrantRoleStmt": _grant_role,
    "CommentStmt": _object_typed("comment", "objtype"),
    "SecLabelStmt": _object_typed("security_label", "objtype"),
}


def classify(node_type: str, body: Node) -> tuple[str, str | None]:
    """(kind, object_type) of a statement node; (`other`, None) for a node not known here."""
    variable = VARIABLE_KINDS.get(node_type)
    if variable is not None:
        return variable(body)
    fixed = FIXED_KINDS.get(node_type)
    if fixed is not None:
        return fixed
    return OTHER, None


def is_statement(node_type: str) -> bool:
    return node_type in VARIABLE_KINDS or node_type in FIXED_KINDS
