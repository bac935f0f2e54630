"""Every GraphQL document the daemon sends is valid against Shopify's real 2026-10 schema.

Also checks what validation alone cannot: inventory mutations carry ``@idempotent``,
quantities carry ``changeFromQuantity``, every document stays under Shopify's
1,000-point query cost limit with the page sizes the client sends, and deprecated fields
are used only where we decided to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeNode,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
    value_from_ast_untyped,
)

from daemon import shopify_documents
from daemon.shopify_documents import (
    ALL_DOCUMENTS,
    BULK_QUERIES,
    ID_BATCHES,
    INVENTORY_MUTATIONS,
    MAX_INPUT_ITEMS,
    PAGE_SIZES,
)
from tests import shopify_schema as shopify_schema_module

#: Shopify refuses a query whose requested cost exceeds this (MAX_COST_EXCEEDED)
MAX_QUERY_COST = 1000
#: Shopify charges every mutation this much on top of its selection
MUTATION_BASE_COST = 10

#: Deprecated fields we use on purpose. Customer.email/phone still work in 2026-10 and
#: are what the mapping reads; Order.email/phone carry the same data for the import,
#: so losing these later costs nothing but a fallback. Anything new here is a decision.
ALLOWED_DEPRECATED = {"Customer.email", "Customer.phone"}

_CompositeType = GraphQLObjectType | GraphQLInterfaceType


def _operation(document: DocumentNode) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1, "one operation per document"
    return operations[0]


def _root(schema: GraphQLSchema, operation: OperationDefinitionNode) -> GraphQLObjectType:
    root = schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    assert root is not None
    return root


def _argument(node: FieldNode, name: str, variables: Mapping[str, Any]) -> Any:
    for argument in node.arguments or ():
        if argument.name.value == name:
            return value_from_ast_untyped(argument.value, dict(variables))
    return None


def _declared(operation: OperationDefinitionNode) -> dict[str, str]:
    """Variable name → declared type, as written (``Int!``)."""
    return {v.variable.name.value: _type_name(v.type) for v in operation.variable_definitions or ()}


def _fields(
    schema: GraphQLSchema, selection_set: SelectionSetNode | None, parent: _CompositeType
) -> Iterator[tuple[_CompositeType, FieldNode]]:
    """(parent type, field node) for each field selected directly in ``selection_set``."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = cast(_CompositeType, schema.get_type(condition.name.value)) if condition else parent
            yield from _fields(schema, selection.selection_set, target)
        elif isinstance(selection, FieldNode) and selection.name.value != "__typename":
            yield parent, selection


def estimated_cost(schema: GraphQLSchema, document: str, variables: Mapping[str, Any]) -> int:
    """Shopify's requested query cost, computed statically as shopify.dev describes it.

    Scalars and enums 0; objects 1; a connection 2 plus ``first`` × (1 + the cost inside
    one node); ``nodes(ids:)`` one node per id; a mutation 10 more. Plain lists of
    objects (``taxLines``) are priced as one object: Shopify does not multiply them.
    """
    operation = _operation(parse(document))

    def cost(selection_set: SelectionSetNode | None, parent: _CompositeType, page: int | None) -> int:
        total = 0
        for owner, node in _fields(schema, selection_set, parent):
            definition = owner.fields[node.name.value]
            named = get_named_type(definition.type)
            if is_leaf_type(named):
                continue
            composite = cast(_CompositeType, named)
            if page is not None and node.name.value == "nodes":
                total += page * (1 + cost(node.selection_set, composite, None))
            elif page is not None and node.name.value == "pageInfo":
                continue  # part of the connection's 2 points
            elif named.name.endswith("Connection"):
                first = _argument(node, "first", variables) or _argument(node, "last", variables)
                assert isinstance(first, int), f"{node.name.value} needs a first argument"
                total += 2 + cost(node.selection_set, composite, first)
            elif node.name.value == "nodes" and owner is schema.query_type:
                ids = _argument(node, "ids", variables)
                total += len(ids) * (1 + cost(node.selection_set, composite, None))
            else:
                total += 1 + cost(node.selection_set, composite, None)
        return total

    base = MUTATION_BASE_COST if operation.operation == OperationType.MUTATION else 0
    return base + cost(operation.selection_set, _root(schema, operation), None)


def _deprecated_fields(schema: GraphQLSchema, document: str) -> set[str]:
    operation = _operation(parse(document))
    found: set[str] = set()

    def walk(selection_set: SelectionSetNode | None, parent: _CompositeType) -> None:
        for owner, node in _fields(schema, selection_set, parent):
            definition = owner.fields[node.name.value]
            if definition.deprecation_reason:
                found.add(f"{owner.name}.{node.name.value}")
            named = get_named_type(definition.type)
            if not is_leaf_type(named):
                walk(node.selection_set, cast(_CompositeType, named))

    walk(operation.selection_set, _root(schema, operation))
    return found


def _sample_variables(name: str) -> dict[str, Any]:
    """Variables as the client sends them, at their most expensive."""
    ids = ID_BATCHES.get(name, MAX_INPUT_ITEMS)
    variables: dict[str, Any] = {"ids": [f"gid://shopify/Node/{i}" for i in range(ids)]}
    if name in PAGE_SIZES:
        variables["first"] = PAGE_SIZES[name]
    return variables


def _type_name(node: TypeNode) -> str:
    if isinstance(node, NonNullTypeNode):
        return _type_name(node.type) + "!"
    if isinstance(node, ListTypeNode):
        return f"[{_type_name(node.type)}]"
    assert isinstance(node, NamedTypeNode)
    return node.name.value


names = sorted(ALL_DOCUMENTS)
#: documents sent on their own (not as the text of a bulk query)
sent = sorted(set(ALL_DOCUMENTS) - set(BULK_QUERIES))


@pytest.mark.parametrize("name", names)
def test_document_is_valid_against_admin_schema(shopify_schema: GraphQLSchema, name: str) -> None:
    errors = validate(shopify_schema, parse(ALL_DOCUMENTS[name]))
    assert not errors, f"{name} is not valid against Admin 2026-10:\n" + "\n".join(
        f"  {error.message}" for error in errors
    )


@pytest.mark.parametrize("name", sent)
def test_document_stays_under_the_cost_limit(shopify_schema: GraphQLSchema, name: str) -> None:
    cost = estimated_cost(shopify_schema, ALL_DOCUMENTS[name], _sample_variables(name))
    assert cost <= MAX_QUERY_COST, f"{name} would request about {cost} points (limit {MAX_QUERY_COST})"


@pytest.mark.parametrize("name", names)
def test_document_uses_deprecated_fields_only_on_purpose(shopify_schema: GraphQLSchema, name: str) -> None:
    unexpected = _deprecated_fields(shopify_schema, ALL_DOCUMENTS[name]) - ALLOWED_DEPRECATED
    assert not unexpected, f"{name} uses deprecated fields: {sorted(unexpected)}"


@pytest.mark.parametrize("name", sent)
def test_document_has_one_named_operation(name: str) -> None:
    # The client sends operationName and keys its cost memory on the document.
    operation = _operation(parse(ALL_DOCUMENTS[name]))
    assert operation.name is not None, f"{name} has an anonymous operation"


@pytest.mark.parametrize("name", sorted(PAGE_SIZES))
def test_paged_documents_take_first_and_after(name: str) -> None:
    operation = _operation(parse(ALL_DOCUMENTS[name]))
    declared = _declared(operation)
    assert declared.get("first") == "Int!", name
    assert declared.get("after") == "String", name
    assert "pageInfo { hasNextPage endCursor }" in ALL_DOCUMENTS[name], name
    assert 1 <= PAGE_SIZES[name] <= 250, name


def test_bulk_queries_are_anonymous_unpaged_and_take_the_location(shopify_schema: GraphQLSchema) -> None:
    location = "gid://shopify/Location/77"
    for name in BULK_QUERIES:
        operation = _operation(parse(ALL_DOCUMENTS[name]))
        assert operation.name is None, name
        assert not operation.variable_definitions, name
        assert "first:" not in ALL_DOCUMENTS[name], name
    query = shopify_documents.bulk_variants_query(location)
    assert f'locationId: "{location}"' in query
    assert shopify_documents.BULK_LOCATION_PLACEHOLDER not in query
    assert not validate(shopify_schema, parse(query))
    assert shopify_documents.bulk_variants_query(None) == shopify_documents.BULK_VARIANTS


def test_all_documents_lists_every_document_constant() -> None:
    constants = {
        name
        for name, value in vars(shopify_documents).items()
        if name.isupper() and isinstance(value, str) and value.lstrip().startswith(("query", "mutation"))
    }
    assert constants == set(ALL_DOCUMENTS)


@pytest.mark.parametrize("name", INVENTORY_MUTATIONS)
def test_inventory_mutations_are_idempotent(name: str) -> None:
    operation = _operation(parse(ALL_DOCUMENTS[name]))
    assert operation.operation == OperationType.MUTATION
    declared = _declared(operation)
    for field in operation.selection_set.selections:
        assert isinstance(field, FieldNode)
        directives = {d.name.value: d for d in field.directives or ()}
        assert "idempotent" in directives, f"{name}: {field.name.value} lacks @idempotent"
        (argument,) = directives["idempotent"].arguments or ()
        assert argument.name.value == "key"
        key = value_from_ast_untyped(argument.value, {"key": "k"})
        assert key == "k", f"{name}: the idempotency key must come from the $key variable"
        assert declared["key"] == "String!"


def test_every_inventory_mutation_is_listed(shopify_schema: GraphQLSchema) -> None:
    for name, document in ALL_DOCUMENTS.items():
        operation = _operation(parse(document))
        if operation.operation != OperationType.MUTATION:
            continue
        for field in operation.selection_set.selections:
            assert isinstance(field, FieldNode)
            if field.name.value.startswith("inventory"):
                assert name in INVENTORY_MUTATIONS, f"{name} changes inventory but is not checked"


def test_set_stock_quantities_carry_change_from_quantity(shopify_schema: GraphQLSchema) -> None:
    operation = _operation(parse(shopify_documents.SET_STOCK))
    declared = _declared(operation)
    assert declared["input"] == "InventorySetQuantitiesInput!"
    input_type = shopify_schema.type_map["InventorySetQuantitiesInput"]
    quantities = input_type.fields["quantities"].type  # type: ignore[attr-defined]
    assert isinstance(quantities, GraphQLNonNull)
    assert isinstance(quantities.of_type, GraphQLList)
    quantity_type = get_named_type(quantities)
    assert quantity_type.name == "InventoryQuantityInput"
    assert "changeFromQuantity" in quantity_type.fields  # type: ignore[attr-defined]
    assert "@idempotent(key: $key)" in shopify_documents.SET_STOCK


def test_schema_declares_the_idempotent_directive(shopify_schema: GraphQLSchema) -> None:
    directive = shopify_schema.get_directive("idempotent")
    assert directive is not None
    assert str(directive.args["key"].type) == "String!"


# --- the schema fixture itself ---------------------------------------------------------------


def _unavailable() -> GraphQLSchema:
    raise shopify_schema_module.SchemaUnavailable("npm is not installed")


def test_missing_schema_skips_on_a_developer_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(shopify_schema_module, "load_admin_schema", _unavailable)
    with pytest.raises(pytest.skip.Exception, match="npm is not installed"):
        shopify_schema_module.require_admin_schema()


def test_missing_schema_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(shopify_schema_module, "load_admin_schema", _unavailable)
    with pytest.raises(pytest.fail.Exception, match="npm is not installed"):
        shopify_schema_module.require_admin_schema()


def test_fetching_without_npm_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RBSH_SCHEMA_CACHE", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda _: None)
    with pytest.raises(shopify_schema_module.SchemaUnavailable, match="npm"):
        shopify_schema_module.schema_path()


@pytest.mark.parametrize(
    "name", sorted(n for n, d in ALL_DOCUMENTS.items() if d in shopify_documents.POINTS_PER_ID)
)
def test_the_client_knows_what_an_id_costs(shopify_schema: GraphQLSchema, name: str) -> None:
    # the client's price of a records-by-id request before Shopify has priced one
    document = ALL_DOCUMENTS[name]
    per_id = shopify_documents.POINTS_PER_ID[document]
    for ids in (1, ID_BATCHES[name]):
        assert (
            estimated_cost(shopify_schema, document, {"ids": ["gid://shopify/Node/1"] * ids}) == per_id * ids
        )
