"""Trigger a workflow with an in-app feed step, read the feed, engage with the message."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import knockapi
import pytest

from support import feed_step, unique, wait_for

ACTION_URL = "https://example.com/orders/42"


@dataclass
class FeedItem:
    user_id: str
    workflow: str
    workflow_run_id: str
    message_id: str


def feed(client: knockapi.Knock, user_id: str, channel: str, **params: Any) -> dict[str, Any]:
    """The feed as raw JSON (the browser client reads fields the SDK models do not declare).

    The SDK must also be able to parse it.
    """
    response = client.users.feeds.with_raw_response.list_items(user_id, channel, **params)
    response.parse()
    return response.json()


@pytest.fixture
def feed_item(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> FeedItem:
    """Trigger a feed workflow for a new user and wait until the item is in their feed."""
    workflow = make_workflow([feed_step(action_url="{{ data.url }}")], prefix="feed")
    user_id = unique("ada")
    run = client.workflows.trigger(
        workflow,
        recipients=[{"id": user_id, "name": "Ada", "email": f"{user_id}@example.com"}],
        data={"url": ACTION_URL},
    )
    entries = wait_for(
        lambda: feed(client, user_id, feed_channel_id)["entries"], f"a feed item for {user_id}"
    )
    assert len(entries) == 1, entries
    return FeedItem(user_id, workflow, run.workflow_run_id, entries[0]["id"])


def test_trigger_answers_with_a_workflow_run_id(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step()], prefix="feed")
    run = client.workflows.trigger(workflow, recipients=[{"id": unique("ada"), "name": "Ada"}])
    uuid.UUID(run.workflow_run_id)  # a UUID, per the spec


def test_feed_item_is_rendered(
    client: knockapi.Knock, feed_item: FeedItem, feed_channel_id: str
) -> None:
    body = feed(client, feed_item.user_id, feed_channel_id)
    [item] = body["entries"]

    assert item["id"] == feed_item.message_id
    assert item["__cursor"], "the browser client pages and refetches with __cursor"
    assert item["source"]["key"] == feed_item.workflow
    assert item["data"]["url"] == ACTION_URL
    assert item["read_at"] is None and item["seen_at"] is None and item["archived_at"] is None

    blocks = {block["name"]: block for block in item["blocks"]}
    assert blocks["body"]["type"] == "markdown"
    assert blocks["body"]["content"] == "Hello **Ada**"  # Liquid-rendered markdown
    assert "<strong>Ada</strong>" in blocks["body"]["rendered"]
    # @knocklabs/react reads the link of a notification from the `action_url` block.
    assert blocks["action_url"]["rendered"] == ACTION_URL

    assert body["meta"]["total_count"] == 1
    assert body["meta"]["unread_count"] == 1
    assert body["meta"]["unseen_count"] == 1
    assert body["page_info"]["page_size"] >= 1
    assert body["page_info"]["after"] is None

    # The feed route takes the channel key as well as its id.
    by_key = feed(client, feed_item.user_id, "in-app-feed")
    assert [e["id"] for e in by_key["entries"]] == [feed_item.message_id]


def test_read_and_seen_lower_the_counts(
    client: knockapi.Knock, feed_item: FeedItem, feed_channel_id: str
) -> None:
    seen = client.messages.mark_as_seen(feed_item.message_id)
    assert seen.id == feed_item.message_id
    assert seen.seen_at is not None
    assert "seen" in seen.engagement_statuses
    meta = feed(client, feed_item.user_id, feed_channel_id)["meta"]
    assert (meta["unseen_count"], meta["unread_count"]) == (0, 1)

    read = client.messages.mark_as_read(feed_item.message_id)
    assert read.read_at is not None
    assert "read" in read.engagement_statuses
    body = feed(client, feed_item.user_id, feed_channel_id)
    assert (body["meta"]["unseen_count"], body["meta"]["unread_count"]) == (0, 0)
    assert body["meta"]["total_count"] == 1
    [item] = body["entries"]
    assert item["read_at"] is not None and item["seen_at"] is not None

    # Status filters follow the engagement state.
    assert feed(client, feed_item.user_id, feed_channel_id, status="unread")["entries"] == []
    assert len(feed(client, feed_item.user_id, feed_channel_id, status="read")["entries"]) == 1


def test_archived_items_are_excluded_by_default(
    client: knockapi.Knock, feed_item: FeedItem, feed_channel_id: str
) -> None:
    archived = client.messages.archive(feed_item.message_id)
    assert archived.archived_at is not None
    assert "archived" in archived.engagement_statuses

    assert feed(client, feed_item.user_id, feed_channel_id)["entries"] == []
    included = feed(client, feed_item.user_id, feed_channel_id, archived="include")["entries"]
    assert [e["id"] for e in included] == [feed_item.message_id]
    assert included[0]["archived_at"] is not None
    only = feed(client, feed_item.user_id, feed_channel_id, archived="only")["entries"]
    assert [e["id"] for e in only] == [feed_item.message_id]

    client.messages.unarchive(feed_item.message_id)
    assert len(feed(client, feed_item.user_id, feed_channel_id)["entries"]) == 1


def test_message_endpoints(
    client: knockapi.Knock, feed_item: FeedItem, feed_channel_id: str
) -> None:
    listed = client.messages.list(workflow_run_id=feed_item.workflow_run_id)
    assert [m.id for m in listed.items] == [feed_item.message_id]

    message = client.messages.get(feed_item.message_id)
    assert message.id == feed_item.message_id
    assert message.recipient == feed_item.user_id
    assert message.channel_id == feed_channel_id
    assert message.source.key == feed_item.workflow
    assert message.source.workflow_run_id in (None, feed_item.workflow_run_id)
    assert message.status in ("sent", "delivered")
    assert message.data == {"url": ACTION_URL}
    assert message.engagement_statuses == []

    content = client.messages.with_raw_response.get_content(feed_item.message_id)
    content.parse()
    body = content.json()
    assert body["message_id"] == feed_item.message_id
    assert body["data"]["__typename"] == "MessageInAppFeedContent"
    rendered = " ".join(block.get("rendered", "") for block in body["data"]["blocks"])
    assert "<strong>Ada</strong>" in rendered

    client.messages.mark_as_read(feed_item.message_id)
    events = wait_for(
        lambda: [e.type for e in client.messages.list_events(feed_item.message_id).items
                 if e.type == "message.read"],
        "a message.read event",
    )
    assert events == ["message.read"]
    all_events = client.messages.list_events(feed_item.message_id).items
    assert all(e.recipient == feed_item.user_id for e in all_events)

    # In-app messages have no downstream provider; the list must still answer.
    logs = client.messages.list_delivery_logs(feed_item.message_id)
    assert isinstance(logs.items, list)

    users_messages = client.users.list_messages(feed_item.user_id)
    assert [m.id for m in users_messages.items] == [feed_item.message_id]
    by_channel = client.users.list_messages(feed_item.user_id, channel_id=feed_channel_id)
    assert [m.id for m in by_channel.items] == [feed_item.message_id]

    with pytest.raises(knockapi.NotFoundError):
        client.messages.get(unique("missing-message"))
