"""Workflow cancellation by cancellation key."""

from __future__ import annotations

from typing import Callable

import knockapi

from support import delay_step, feed_step, unique, wait_for, wait_for_runs


def test_cancel_without_pending_runs_is_accepted(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step()], prefix="cancel")

    assert client.workflows.cancel(workflow, cancellation_key=unique("nothing")) is None
    assert (
        client.workflows.cancel(
            workflow, cancellation_key=unique("nothing"), recipients=[unique("user")]
        )
        is None
    )


def test_cancel_stops_a_delayed_run(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([delay_step(1, "hours"), feed_step()], prefix="cancel")
    cancelled_user, other_user = unique("cancelled"), unique("kept")
    cancellation_key = unique("cancel-key")
    client.workflows.trigger(
        workflow,
        recipients=[{"id": cancelled_user, "name": "Ada"}, {"id": other_user, "name": "Grace"}],
        cancellation_key=cancellation_key,
    )
    wait_for(
        lambda: len(client.workflow_recipient_runs.list(workflow=workflow).items) == 2,
        "both recipient runs to exist",
    )

    client.workflows.cancel(
        workflow, cancellation_key=cancellation_key, recipients=[cancelled_user]
    )

    runs = wait_for_runs(client, workflow, 1, status="cancelled")
    [run] = [r for r in runs if r.status == "cancelled"]
    assert run.recipient == cancelled_user
    assert run.trigger_source.cancellation_key in (None, cancellation_key)
    [kept] = client.workflow_recipient_runs.list(workflow=workflow, recipient=other_user).items
    assert kept.status != "cancelled"
    assert client.users.list_messages(cancelled_user).items == []

    # Cancelling the rest ends the other run too; nothing was ever sent.
    client.workflows.cancel(workflow, cancellation_key=cancellation_key)
    wait_for_runs(client, workflow, 2, status="cancelled")
    assert client.users.list_messages(other_user).items == []
