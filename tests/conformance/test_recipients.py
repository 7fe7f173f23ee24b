"""Recipients through the official SDK: preferences, tenants, objects and subscriptions,
channel data and audience members."""

from __future__ import annotations

from typing import Any, Callable

import knockapi
import pytest

from support import feed_step, unique, wait_for, wait_for_runs


def _feed_texts(client: knockapi.Knock, feed_channel_id: str, user_id: str) -> list[str]:
    items = client.users.feeds.list_items(user_id, feed_channel_id).entries
    return [block.rendered for item in items for block in item.blocks if block.name == "body"]


def test_preference_sets_set_get_list_delete(client: knockapi.Knock) -> None:
    user_id = unique("prefs")
    client.users.update(user_id, name="Pref")

    empty = client.users.get_preferences(user_id, "default")
    assert empty.id == "default"
    assert not empty.workflows

    stored = client.users.set_preferences(
        user_id,
        "default",
        workflows={"digest": False},
        categories={"marketing": {"channel_types": {"email": False}}},
    )
    assert stored.id == "default"
    assert stored.workflows == {"digest": False}

    merged = client.users.set_preferences(
        user_id,
        "default",
        _persistence_strategy="merge",
        channel_types={"sms": False},
    )
    assert merged.workflows == {"digest": False}, "merge keeps what the write leaves out"
    assert merged.channel_types is not None and merged.channel_types.sms is False

    replaced = client.users.set_preferences(user_id, "default", channel_types={"email": True})
    assert not replaced.workflows, "a plain write replaces the set"

    tenant_id = unique("tenant")
    client.users.set_preferences(user_id, tenant_id, workflows={"news": False})
    ids = sorted(s.id for s in client.users.list_preferences(user_id))
    assert ids == sorted(["default", tenant_id])
    assert client.users.get_preferences(user_id, tenant_id).workflows == {"news": False}

    client.users.unset_preferences(user_id, tenant_id)
    assert [s.id for s in client.users.list_preferences(user_id)] == ["default"]

    with pytest.raises(knockapi.UnprocessableEntityError):
        client.users.set_preferences(user_id, "default", channel_types={"pigeon": True})  # type: ignore[arg-type]
    assert client.users.get_preferences(user_id, "default").channel_types.email is True


def test_bulk_preferences_and_listing_users_with_preferences(client: knockapi.Knock) -> None:
    users = [unique("bulkpref") for _ in range(2)]
    for user_id in users:
        client.users.update(user_id, name=user_id)
    op = client.users.bulk.set_preferences(
        user_ids=users, preferences={"workflows": {"digest": False}}
    )
    assert op.status == "completed"
    assert op.success_count == 2
    for user_id in users:
        assert client.users.get_preferences(user_id, "default").workflows == {"digest": False}

    found: dict[str, Any] = {}
    for user in client.users.list(include=["preferences"]):
        if user.id in users:
            found[user.id] = user.model_extra["preferences"]
    assert set(found) == set(users)
    assert found[users[0]]["default"]["workflows"] == {"digest": False}


def test_preferences_block_and_inline_preferences_on_trigger(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    key = make_workflow([feed_step(markdown_body="News")])
    blocked, open_ = unique("blocked"), unique("open")
    client.users.set_preferences(blocked, "default", workflows={key: False})
    client.workflows.trigger(
        key,
        recipients=[
            blocked,
            {"id": open_, "name": "Open", "preferences": {"default": {"workflows": {key: True}}}},
        ],
    )
    wait_for_runs(client, key, 2)
    assert _feed_texts(client, feed_channel_id, open_) == ["<p>News</p>"]
    assert _feed_texts(client, feed_channel_id, blocked) == []
    assert client.users.get_preferences(open_, "default").workflows == {key: True}


def test_tenants_set_get_list_delete(client: knockapi.Knock) -> None:
    tenant_id = unique("tenant")
    tenant = client.tenants.set(
        tenant_id,
        name="Acme",
        settings={"branding": {"primary_color": "#ff0000"}},
    )
    assert tenant.id == tenant_id
    assert tenant.name == "Acme"
    fetched = client.tenants.get(tenant_id)
    assert fetched.name == "Acme"
    assert fetched.settings is not None
    assert fetched.settings.branding is not None
    assert fetched.settings.branding.primary_color == "#ff0000"
    assert tenant_id in {t.id for t in client.tenants.list()}
    client.tenants.delete(tenant_id)
    with pytest.raises(knockapi.NotFoundError):
        client.tenants.get(tenant_id)


def test_objects_subscriptions_and_trigger_to_an_object(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    collection = "projects"
    object_id = unique("project")
    obj = client.objects.set(collection, object_id, name="Apollo", extra_body={"stage": "beta"})
    assert obj.id == object_id
    assert obj.collection == collection
    fetched = client.objects.get(collection, object_id)
    assert fetched.properties["name"] == "Apollo"
    assert fetched.properties["stage"] == "beta"

    members = [unique("member") for _ in range(2)]
    added = client.objects.add_subscriptions(collection, object_id, recipients=members)
    assert {s.recipient.id for s in added} == set(members)  # type: ignore[union-attr]
    listed = client.objects.list_subscriptions(collection, object_id)
    assert {s.recipient.id for s in listed} == set(members)  # type: ignore[union-attr]

    key = make_workflow([feed_step(markdown_body="Update")])
    client.workflows.trigger(key, recipients=[{"collection": collection, "id": object_id}])
    wait_for_runs(client, key, 2)
    for member in members:
        assert _feed_texts(client, feed_channel_id, member) == ["<p>Update</p>"]


def test_channel_data_set_get(client: knockapi.Knock) -> None:
    user_id = unique("devices")
    client.users.update(user_id, name="Devices")
    stored = client.users.set_channel_data(user_id, "push", data={"tokens": ["token-1", "token-2"]})
    assert stored.data.tokens == ["token-1", "token-2"]  # type: ignore[union-attr]
    fetched = client.users.get_channel_data(user_id, "push")
    assert fetched.data.tokens == ["token-1", "token-2"]  # type: ignore[union-attr]
    client.users.unset_channel_data(user_id, "push")
    with pytest.raises(knockapi.NotFoundError):
        client.users.get_channel_data(user_id, "push")


def test_audience_members_add_list_remove(client: knockapi.Knock) -> None:
    audience = unique("audience")
    users = [unique("aud") for _ in range(2)]
    client.audiences.add_members(audience, members=[{"user": {"id": u}} for u in users])
    listed = client.audiences.list_members(audience)
    assert {m.user.id for m in listed.entries} == set(users)
    client.audiences.remove_members(audience, members=[{"user": {"id": users[0]}}])
    remaining = wait_for(
        lambda: [m.user.id for m in client.audiences.list_members(audience).entries],
        "audience members",
    )
    assert remaining == [users[1]]
