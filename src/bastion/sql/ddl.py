"""Definition and maintenance statements: which relations they change, which they only read.

A relation a statement creates, alters, drops, grants on, comments on, truncates, refreshes or
rewrites is written; any other relation it names (INHERITS, LIKE, REFERENCES, a publication's
tables, LOCK) is read. Expressions inside definitions (defaults, checks, index expressions,
policy conditions) are walked like any other: the server evaluates them, some at once
(ALTER TABLE ... ADD COLUMN ... DEFAULT f() runs f for every existing row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.sql import flags
from bastion.sql.columns import OTHER, WHERE
from bastion.sql.functions import setting_flags
from bastion.sql.kinds import ON_RELATION_OBJECTS, RELATION_OBJECTS
from bastion.sql.plpgsql import create_function
from bastion.sql.relations import Relation, Scope, table_from_names, table_from_range_var
from bastion.sql.statement import TableRef
from bastion.sql.walker import (
    Node,
    body_of,
    def_elem_true,
    def_elems,
    list_items,
    strings,
    unwrap,
)

if TYPE_CHECKING:
    from bastion.sql.collector import Collector, Handler


def _range_vars(value: Any) -> list[Node]:
    """RangeVar bodies in a field: an unwrapped RangeVar, a wrapped one, or a list of them."""
    if isinstance(value, dict):
        if "relname" in value:
            return [value]
        body = body_of(value, "RangeVar")
        return [body] if body is not None else []
    if isinstance(value, list):
        return [rv for item in value for rv in _range_vars(item)]
    return []


def _object_names(obj: Any) -> list[str]:
    """The name parts of an object in DROP, COMMENT, SECURITY LABEL: a String, a List of
    Strings, an ObjectWithArgs or a TypeName."""
    if isinstance(obj, dict):
        string = body_of(obj, "String")
        if string is not None:
            return [str(string.get("sval", ""))]
        for key, field in (("ObjectWithArgs", "objname"), ("TypeName", "names")):
            body = body_of(obj, key)
            if body is not None:
                return strings(body.get(field))
    return strings(list_items(obj))


def _write_objects(collector: Collector, object_type: object, objects: list[Any]) -> None:
    for obj in objects:
        names = _object_names(obj)
        if object_type in ON_RELATION_OBJECTS:
            names = names[:-1]  # "t.column", "t.trigger": the relation is what changes
        elif object_type not in RELATION_OBJECTS:
            continue
        table = table_from_names(names)
        if table is not None:
            collector.write(table)


def targets(*fields: str, read: bool = False, flag: str | None = None) -> Handler:
    """A handler for statements whose `fields` name the relations they change (or only read,
    with `read=True`); every other field is walked for relations read and functions called,
    with the target relations in scope for column references."""

    def handle(collector: Collector, body: Node, scope: Scope | None) -> None:
        inner_scope = Scope(parent=scope)
        for field in fields:
            for range_var in _range_vars(body.get(field)):
                table = table_from_range_var(range_var)
                if read:
                    collector.read(table)
                else:
                    collector.write(table)
                inner_scope.relations.append(Relation(table.name, table))
        if flag is not None:
            collector.flags.add(flag)
        collector.walk_fields(body, OTHER, inner_scope, skip=fields)

    return handle


_plain_targets = targets("relation")
_POLICY_CONDITIONS = ("qual", "with_check")


def _row_policy(collector: Collector, body: Node, scope: Scope | None) -> None:
    """CREATE / ALTER POLICY: its USING and WITH CHECK expressions are conditions on the
    table's rows, like a WHERE: a policy filtering on a column learns its values through what
    becomes visible, so they count for inference too."""
    targets("table")(
        collector, {k: v for k, v in body.items() if k not in _POLICY_CONDITIONS}, scope
    )
    policy_scope = Scope(parent=scope)
    for range_var in _range_vars(body.get("table")):
        table = table_from_range_var(range_var)
        policy_scope.relations.append(Relation(table.name, table))
    for field in _POLICY_CONDITIONS:
        collector.condition(body.get(field), WHERE, policy_scope)


def alter_table(collector: Collector, body: Node, scope: Scope | None) -> None:
    for command in body.get("cmds") or ():
        cmd = body_of(command, "AlterTableCmd")
        subtype = cmd.get("subtype") if cmd is not None else None
        if subtype == "AT_DropColumn":
            collector.flags.add(flags.ALTER_TABLE_DROP_COLUMN)
        elif subtype in ("AT_DisableRowSecurity", "AT_NoForceRowSecurity"):
            collector.flags.add(flags.DISABLE_ROW_SECURITY)
        elif subtype in ("AT_DisableTrig", "AT_DisableTrigAll", "AT_DisableTrigUser"):
            collector.flags.add(flags.DISABLE_TRIGGER)
    if body.get("objtype") == "OBJECT_FOREIGN_TABLE":
        collector.flags.add(flags.FOREIGN_SERVER)
    _plain_targets(collector, body, scope)


def drop(collector: Collector, body: Node, scope: Scope | None) -> None:
    remove_type = body.get("removeType")
    _write_objects(collector, remove_type, body.get("objects") or [])
    if remove_type in ("OBJECT_FOREIGN_SERVER", "OBJECT_FDW", "OBJECT_FOREIGN_TABLE"):
        collector.flags.add(flags.FOREIGN_SERVER)


def comment(collector: Collector, body: Node, scope: Scope | None) -> None:
    """COMMENT ON and SECURITY LABEL ON: the object they describe is changed."""
    _write_objects(collector, body.get("objtype"), [body.get("object")])


def grant(collector: Collector, body: Node, scope: Scope | None) -> None:
    if body.get("targtype", "ACL_TARGET_OBJECT") == "ACL_TARGET_OBJECT" and body.get(
        "objtype"
    ) in RELATION_OBJECTS | {"OBJECT_COLUMN"}:
        for range_var in _range_vars(body.get("objects")):
            collector.write(table_from_range_var(range_var))


def view(collector: Collector, body: Node, scope: Scope | None) -> None:
    for range_var in _range_vars(body.get("view")):
        collector.write(table_from_range_var(range_var))
    collector.expr(body.get("query"), OTHER, scope)


def create_table_as(collector: Collector, body: Node, scope: Scope | None) -> None:
    into = body.get("into")
    if isinstance(into, dict):
        for range_var in _range_vars(into.get("rel")):
            collector.write(table_from_range_var(range_var))
    # CREATE TABLE AS, CREATE MATERIALIZED VIEW, even WITH NO DATA (a later REFRESH fills it).
    collector.moves_data = True
    collector.expr(body.get("query"), OTHER, scope)


def refresh(collector: Collector, body: Node, scope: Scope | None) -> None:
    """REFRESH MATERIALIZED VIEW reruns a stored query Bastion does not see into a table."""
    collector.moves_data = True
    _plain_targets(collector, body, scope)


def create_foreign_table(collector: Collector, body: Node, scope: Scope | None) -> None:
    collector.flags.add(flags.FOREIGN_SERVER)
    base = body.get("base")
    if isinstance(base, dict):
        _plain_targets(collector, base, scope)


def rule(collector: Collector, body: Node, scope: Scope | None) -> None:
    """CREATE RULE: the table is changed; its actions are statements of their own, in which
    NEW and OLD are the row being changed."""
    rule_scope = Scope(parent=scope)
    for range_var in _range_vars(body.get("relation")):
        table = table_from_range_var(range_var)
        collector.write(table)
        rule_scope.relations.append(Relation(table.name, table))
    for pseudo in ("new", "old"):
        rule_scope.relations.append(Relation(pseudo, None, aliased=True, qualified_only=True))
    collector.expr(body.get("whereClause"), OTHER, rule_scope)
    collector.expr(body.get("actions"), OTHER, rule_scope)


def vacuum(collector: Collector, body: Node, scope: Scope | None) -> None:
    """VACUUM rewrites (FULL) or changes relations; ANALYZE only reads them."""
    for item in body.get("rels") or ():
        relation = body_of(item, "VacuumRelation")
        if relation is None:
            continue
        for range_var in _range_vars(relation.get("relation")):
            table: TableRef = table_from_range_var(range_var)
            if body.get("is_vacuumcmd"):
                collector.write(table)
            else:
                collector.read(table)


def settings_of_role(collector: Collector, body: Node, scope: Scope | None) -> None:
    """ALTER ROLE / DATABASE ... SET name = value: the setting applies to future sessions."""
    setstmt = body.get("setstmt")
    if isinstance(setstmt, dict):
        collector.flags.update(setting_flags(str(setstmt.get("name", ""))))


def alter_function(collector: Collector, body: Node, scope: Scope | None) -> None:
    for name, arg in def_elems(body.get("actions")):
        if name == "security" and def_elem_true(arg):
            collector.flags.add(flags.SECURITY_DEFINER)


def composite_type(collector: Collector, body: Node, scope: Scope | None) -> None:
    # `typevar` is the new type's name in RangeVar form, not a table.
    collector.walk_fields(body, OTHER, scope, skip=("typevar",))


# Schema elements and the field naming the object each creates.
_SCHEMA_ELEMENT_TARGETS = {
    "CreateStmt": "relation",
    "ViewStmt": "view",
    "CreateSeqStmt": "sequence",
    "IndexStmt": "relation",
    "CreateTrigStmt": "relation",
}


def create_schema(collector: Collector, body: Node, scope: Scope | None) -> None:
    """CREATE SCHEMA s CREATE TABLE t ...: each element is a statement of its own, and the
    objects it creates without a schema are created in s."""
    schema = body.get("schemaname")
    for element in body.get("schemaElts") or ():
        unwrapped = unwrap(element) if isinstance(element, dict) else None
        if unwrapped is None:
            collector.expr(element, OTHER, scope)
            continue
        node_type, element_body = unwrapped
        field = _SCHEMA_ELEMENT_TARGETS.get(node_type)
        target = element_body.get(field) if field else None
        if schema and isinstance(target, dict) and not target.get("schemaname"):
            element = {node_type: {**element_body, field: {**target, "schemaname": schema}}}
        collector.sub_statement(element, scope)


def _foreign(collector: Collector, body: Node, scope: Scope | None) -> None:
    collector.flags.add(flags.FOREIGN_SERVER)


HANDLERS: dict[str, Handler] = {
    "CreateStmt": _plain_targets,
    "AlterTableStmt": alter_table,
    "IndexStmt": _plain_targets,
    "CreateTrigStmt": _plain_targets,
    "CreatePolicyStmt": _row_policy,
    "AlterPolicyStmt": _row_policy,
    "CreateSeqStmt": targets("sequence"),
    "AlterSeqStmt": targets("sequence"),
    "RenameStmt": _plain_targets,
    "AlterObjectSchemaStmt": _plain_targets,
    "AlterObjectDependsStmt": _plain_targets,
    "AlterOwnerStmt": _plain_targets,
    "RefreshMatViewStmt": refresh,
    "ClusterStmt": _plain_targets,
    "ReindexStmt": _plain_targets,
    "TruncateStmt": targets("relations"),
    "LockStmt": targets("relations", read=True),
    "CreateStatsStmt": targets("relations", read=True),
    "VacuumStmt": vacuum,
    "DropStmt": drop,
    "CommentStmt": comment,
    "SecLabelStmt": comment,
    "GrantStmt": grant,
    "ViewStmt": view,
    "CreateTableAsStmt": create_table_as,
    "CreateForeignTableStmt": create_foreign_table,
    "RuleStmt": rule,
    "AlterRoleSetStmt": settings_of_role,
    "AlterDatabaseSetStmt": settings_of_role,
    "CreateFunctionStmt": create_function,
    "AlterFunctionStmt": alter_function,
    "CompositeTypeStmt": composite_type,
    "CreateSchemaStmt": create_schema,
    "CreateForeignServerStmt": _foreign,
    "AlterForeignServerStmt": _foreign,
    "CreateUserMappingStmt": _foreign,
    "AlterUserMappingStmt": _foreign,
    "DropUserMappingStmt": _foreign,
    "CreateFdwStmt": _foreign,
    "AlterFdwStmt": _foreign,
    "ImportForeignSchemaStmt": _foreign,
}
