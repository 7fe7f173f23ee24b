"""Workflow function steps (batch, delay, throttle, branch) in real time with short windows.

Windows are a few seconds long, so every "not yet" check happens well inside the window and
every "done" check polls with the suite's generous timeout. The only timing assertion is that
nothing is delivered before its window has passed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

import knockapi

from support import (
    batch_step,
    delay_step,
    feed_step,
    throttle_step,
    unique,
    wait_for,
    wait_for_runs,
)

BATCH_WINDOW = 3  # seconds
DELAY = 2  # seconds

# Each activity carries its trigger data at the top level (as Knock's docs use it) and under
# `data`; `actors` holds the distinct actors as user objects.
DIGEST = (
    "{{ total_activities }} comments by {{ total_actors }}"
    "|{% for u in actors %}{{ u.name }};{% endfor %}"
    "|{% for a in activities %}{{ a.actor.name }}/{{ a.comment }}/{{ a.data.comment }};{% endfor %}"
)


def digest_parts(text: str) -> tuple[str, list[str], list[str]]:
    """Split a rendered DIGEST into its heading, actor names and activity lines."""
    head, actors, activities = text.split("|")
    assert actors.endswith(";") and activities.endswith(";"), text
    return head, actors[:-1].split(";"), activities[:-1].split(";")


def digest_workflow(make_workflow: Callable[..., str]) -> str:
    return make_workflow(
        [batch_step(BATCH_WINDOW, "seconds"), feed_step(ref="digest", markdown_body=DIGEST)],
        prefix="batch",
    )


def runs_of(client: knockapi.Knock, workflow: str) -> list[Any]:
    return list(client.workflow_recipient_runs.list(workflow=workflow))


def wait_for_paused(client: knockapi.Knock, workflow: str, count: int) -> list[Any]:
    """Wait until `workflow` has exactly `count` runs and all of them are paused."""

    def probe() -> list[Any] | None:
        runs = runs_of(client, workflow)
        return runs if len(runs) == count and all(r.status == "paused" for r in runs) else None

    return wait_for(probe, f"{count} paused run(s) of workflow {workflow}", interval=0.05)


def messages_of(client: knockapi.Knock, user_id: str) -> list[Any]:
    return client.users.list_messages(user_id).items


def wait_for_messages(client: knockapi.Knock, user_id: str, count: int) -> list[Any]:
    def probe() -> list[Any] | None:
        items = messages_of(client, user_id)
        return items if len(items) >= count else None

    return wait_for(probe, f"{count} message(s) for {user_id}")


def feed_entries(client: knockapi.Knock, user_id: str, channel_id: str) -> list[Any]:
    return client.users.feeds.list_items(user_id, channel_id).entries


def body_text(entry: Any) -> str:
    """The Liquid-rendered markdown of a feed item's body block."""
    [body] = [block for block in entry.blocks if block.name == "body"]
    return body.content


def test_batch_collects_triggers_into_one_digest(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    workflow = digest_workflow(make_workflow)
    user_id = unique("ada")
    ann, bob = unique("ann"), unique("bob")
    comments = [(ann, "c0"), (bob, "c1"), (ann, "c2"), (bob, "c3")]
    names = {ann: "Ann", bob: "Bob"}

    started = time.monotonic()
    trigger_ids = {
        client.workflows.trigger(
            workflow,
            recipients=[{"id": user_id, "name": "Ada"}],
            actor={"id": actor, "name": names[actor]},
            data={"comment": comment},
        ).workflow_run_id
        for actor, comment in comments
    }
    assert len(trigger_ids) == 4

    # The batch is open: every run waits in it and nothing has been sent.
    paused = wait_for_paused(client, workflow, 4)
    assert {run.workflow_run_id for run in paused} == trigger_ids
    assert messages_of(client, user_id) == []

    [message] = wait_for_messages(client, user_id, 1)
    assert time.monotonic() - started >= BATCH_WINDOW, "the batch closed before its window"

    [entry] = feed_entries(client, user_id, feed_channel_id)
    assert entry.id == message.id
    assert entry.total_activities == 4
    assert entry.total_actors == 2
    assert len(entry.activities) == 4
    assert {actor.id for actor in entry.actors} == {ann, bob}

    # Concurrent triggers have no defined order, so the loops are compared as multisets.
    text = body_text(entry)
    head, actor_names, lines = digest_parts(text)
    assert head == "4 comments by 2", text
    assert sorted(actor_names) == ["Ann", "Bob"], text
    expected = Counter(f"{names[actor]}/{comment}/{comment}" for actor, comment in comments)
    assert Counter(lines) == expected, text
    # The feed item lists the same activities, in the order the template saw them.
    assert [
        f"{a.actor.name}/{a.data['comment']}/{a.data['comment']}" for a in entry.activities
    ] == lines

    # The browser client reads the raw item; check the typenames the SDK models do not enforce.
    raw = client.users.feeds.with_raw_response.list_items(user_id, feed_channel_id).json()
    [raw_entry] = raw["entries"]
    assert {a["__typename"] for a in raw_entry["activities"]} == {"Activity"}
    assert {a["actor"]["__typename"] for a in raw_entry["activities"]} == {"User"}
    assert {u["__typename"] for u in raw_entry["actors"]} == {"User"}

    activities = client.messages.list_activities(message.id).items
    assert len(activities) == 4
    assert Counter(a.data["comment"] for a in activities) == Counter(c for _, c in comments)
    assert {a.actor.id for a in activities} == {ann, bob}
    assert all(a.recipient is not None and a.recipient.id == user_id for a in activities)

    runs = wait_for_runs(client, workflow, 4)
    assert len(runs) == 4
    assert all(run.status == "completed" for run in runs), [run.status for run in runs]
    # The window has closed; nothing else arrives.
    assert len(messages_of(client, user_id)) == 1


def test_cancelled_activity_leaves_the_batch(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    workflow = digest_workflow(make_workflow)
    user_id = unique("ada")
    actor = unique("ann")
    run_ids: dict[str, str] = {}
    started = time.monotonic()
    for number, comment in enumerate(["one", "two", "three"], start=1):
        key = unique(f"k{number}")
        run_ids[key] = client.workflows.trigger(
            workflow,
            recipients=[{"id": user_id, "name": "Ada"}],
            actor={"id": actor, "name": "Ann"},
            data={"comment": comment},
            cancellation_key=key,
        ).workflow_run_id
        # One at a time, so the batch holds the activities in a known order.
        wait_for_paused(client, workflow, number)

    # Cancel the activity that opened the batch: the batch stays open with the other two.
    first_key = next(iter(run_ids))
    assert client.workflows.cancel(workflow, cancellation_key=first_key) is None
    cancelled_run = wait_for(
        lambda: [r for r in runs_of(client, workflow) if r.status == "cancelled"],
        "the cancelled run",
    )
    assert [r.workflow_run_id for r in cancelled_run] == [run_ids[first_key]]
    assert messages_of(client, user_id) == []

    [message] = wait_for_messages(client, user_id, 1)
    assert time.monotonic() - started >= BATCH_WINDOW, "the batch closed before its window"
    [entry] = feed_entries(client, user_id, feed_channel_id)
    assert digest_parts(body_text(entry)) == (
        "2 comments by 1",
        ["Ann"],
        ["Ann/two/two", "Ann/three/three"],
    )
    assert entry.total_activities == 2
    assert entry.total_actors == 1
    assert [a.data["comment"] for a in entry.activities] == ["two", "three"]
    assert len(client.messages.list_activities(message.id).items) == 2

    runs = wait_for_runs(client, workflow, 2)
    statuses = {run.workflow_run_id: run.status for run in runs}
    assert statuses == {
        run_id: "cancelled" if key == first_key else "completed" for key, run_id in run_ids.items()
    }


def test_delay_then_deliver(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    workflow = make_workflow(
        [
            delay_step(DELAY, "seconds"),
            feed_step(ref="later", markdown_body="Later, {{ recipient.name }}"),
        ],
        prefix="delay",
    )
    user_id = unique("ada")
    started = time.monotonic()
    trigger = client.workflows.trigger(workflow, recipients=[{"id": user_id, "name": "Ada"}])

    [run] = wait_for_paused(client, workflow, 1)
    assert run.workflow_run_id == trigger.workflow_run_id
    assert run.recipient == user_id
    assert messages_of(client, user_id) == []

    [message] = wait_for_messages(client, user_id, 1)
    assert time.monotonic() - started >= DELAY, "delivered before the delay"
    [entry] = feed_entries(client, user_id, feed_channel_id)
    assert entry.id == message.id
    assert body_text(entry) == "Later, Ada"
    [run] = wait_for_runs(client, workflow, 1)
    assert run.status == "completed"


def test_throttle_lets_one_through_per_recipient(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    workflow = make_workflow(
        [
            throttle_step(1, "hours", limit=1),
            feed_step(ref="alert", markdown_body="Alert {{ data.n }}"),
        ],
        prefix="throttle",
    )
    ops, other = unique("ops"), unique("other")
    for n in range(5):
        client.workflows.trigger(workflow, recipients=[{"id": ops}], data={"n": n})
    # The window is per recipient: someone else is not held back by it.
    client.workflows.trigger(workflow, recipients=[{"id": other}], data={"n": 9})

    # Throttled runs end without sending; once all six have ended the count is final.
    runs = wait_for_runs(client, workflow, 6)
    assert len(runs) == 6
    [sent] = messages_of(client, ops)
    [entry] = feed_entries(client, ops, feed_channel_id)
    assert entry.id == sent.id
    assert body_text(entry) in {f"Alert {n}" for n in range(5)}
    [entry] = feed_entries(client, other, feed_channel_id)
    assert body_text(entry) == "Alert 9"


PRO_PLAN = {"variable": "recipient.plan", "operator": "equal_to", "argument": "pro"}


def test_branch_on_recipient_property(
    client: knockapi.Knock, make_workflow: Callable[..., str], feed_channel_id: str
) -> None:
    workflow = make_workflow(
        [
            {
                "type": "branch",
                "ref": "by_plan",
                "branches": [
                    {
                        "name": "Pro",
                        "conditions": {"all": [PRO_PLAN]},
                        "steps": [feed_step(ref="pro", markdown_body="Pro plan")],
                        "terminates": False,
                    },
                    {
                        "name": "Default",
                        "conditions": None,
                        "steps": [feed_step(ref="default", markdown_body="Free plan")],
                        "terminates": False,
                    },
                ],
            },
            feed_step(ref="after", markdown_body="After"),
        ],
        prefix="branch",
    )
    pro, free = unique("pro"), unique("free")
    client.workflows.trigger(
        workflow, recipients=[{"id": pro, "plan": "pro"}, {"id": free, "plan": "free"}]
    )

    runs = wait_for_runs(client, workflow, 2)
    assert all(run.status == "completed" for run in runs)
    assert sorted(body_text(e) for e in feed_entries(client, pro, feed_channel_id)) == [
        "After",
        "Pro plan",
    ]
    assert sorted(body_text(e) for e in feed_entries(client, free, feed_channel_id)) == [
        "After",
        "Free plan",
    ]
