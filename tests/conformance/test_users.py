"""Users: identify, get, list with cursor pagination, merge, delete, bulk identify."""

from __future__ import annotations

import knockapi
import pytest
from knockapi.types import BulkOperation

from support import unique, wait_for


def test_identify_flattens_custom_properties_and_merges_updates(client: knockapi.Knock) -> None:
    user_id = unique("user")

    user = client.users.update(
        user_id,
        name="Ada Lovelace",
        email=f"{user_id}@example.com",
        extra_body={"plan": "pro", "profile": {"team": "engines"}},
    )
    assert user.id == user_id
    assert user.name == "Ada Lovelace"
    assert user.email == f"{user_id}@example.com"
    # Custom properties sit on the user itself, not under a nested key.
    assert user.model_extra["plan"] == "pro"
    assert user.model_extra["profile"] == {"team": "engines"}
    assert user.updated_at is not None

    fetched = client.users.get(user_id)
    assert fetched.id == user_id
    assert fetched.name == "Ada Lovelace"
    assert fetched.model_extra["plan"] == "pro"

    # A second identify only touches the fields it names.
    updated = client.users.update(user_id, extra_body={"plan": "enterprise"})
    assert updated.model_extra["plan"] == "enterprise"
    assert updated.name == "Ada Lovelace"
    assert updated.email == f"{user_id}@example.com"
    assert client.users.get(user_id).model_extra["plan"] == "enterprise"


def test_list_paginates_with_cursors(client: knockapi.Knock) -> None:
    prefix = unique("page")
    ours = [f"{prefix}-{i}" for i in range(5)]
    for user_id in ours:
        client.users.update(user_id, name=user_id)

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = client.users.list(page_size=2, after=after or knockapi.omit)
        pages += 1
        assert len(page.entries) <= 2
        seen.extend(u.id for u in page.entries)
        assert page.page_info is not None
        after = page.page_info.after
        if after is None:
            break
        assert pages < 10_000, "pagination does not terminate"

    assert len(seen) == len(set(seen)), "a user appeared on two pages"
    assert pages >= 3  # at least our 5 users over pages of 2
    positions = [seen.index(user_id) for user_id in ours]
    assert positions == sorted(positions), "default order is oldest first"

    # The SDK's own auto-pagination walks the same cursor chain.
    auto = [u.id for u in client.users.list(page_size=2)]
    assert set(ours) <= set(auto)


def test_merge_moves_secondary_into_primary(client: knockapi.Knock) -> None:
    primary, secondary = unique("primary"), unique("secondary")
    client.users.update(primary, name="Primary", extra_body={"plan": "pro"})
    client.users.update(
        secondary,
        name="Secondary",
        email=f"{secondary}@example.com",
        extra_body={"plan": "free", "team": "blue"},
    )

    merged = client.users.merge(primary, from_user_id=secondary)

    assert merged.id == primary
    assert merged.name == "Primary"  # conflicts keep the primary's value
    assert merged.model_extra["plan"] == "pro"
    assert merged.model_extra["team"] == "blue"  # missing properties come from the secondary
    assert merged.email == f"{secondary}@example.com"
    assert client.users.get(primary).model_extra["team"] == "blue"
    with pytest.raises(knockapi.NotFoundError):
        client.users.get(secondary)


def test_delete_then_get_is_not_found(client: knockapi.Knock) -> None:
    user_id = unique("doomed")
    client.users.update(user_id, name="Doomed")
    assert client.users.get(user_id).id == user_id

    assert client.users.delete(user_id) is None

    with pytest.raises(knockapi.NotFoundError) as caught:
        client.users.get(user_id)
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict) and caught.value.body.get("code")


def test_bulk_identify_returns_a_bulk_operation(client: knockapi.Knock) -> None:
    prefix = unique("bulk")
    users = [
        {"id": f"{prefix}-{i}", "name": f"Bulk {i}", "email": f"{prefix}-{i}@example.com"}
        for i in range(3)
    ]

    operation = client.users.bulk.identify(users=users)
    assert operation.id
    assert operation.status in ("queued", "processing", "completed")
    assert operation.estimated_total_rows == 3

    def completed() -> BulkOperation | None:
        op = client.bulk_operations.get(operation.id)
        assert op.status != "failed", op
        return op if op.status == "completed" else None

    done = wait_for(completed, f"bulk operation {operation.id} to complete")
    assert done.id == operation.id
    assert done.success_count == 3
    assert done.processed_rows == 3
    assert done.completed_at is not None

    for user in users:
        fetched = client.users.get(user["id"])
        assert fetched.name == user["name"]
        assert fetched.email == user["email"]
