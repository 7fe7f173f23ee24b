"""Workflow recipient runs: list with filters, get with the run log."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

import knockapi
import pytest

from support import feed_step, unique, wait_for_runs


def test_recipient_runs_list_and_get(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step(ref="feed")], prefix="runs")
    ada, grace = unique("ada"), unique("grace")
    trigger = client.workflows.trigger(
        workflow, recipients=[{"id": ada, "name": "Ada"}, {"id": grace, "name": "Grace"}]
    )

    runs = wait_for_runs(client, workflow, 2)
    assert len(runs) == 2
    assert {run.recipient for run in runs} == {ada, grace}
    for run in runs:
        assert run.workflow == workflow
        assert run.workflow_run_id == trigger.workflow_run_id
        assert run.status == "completed"
        assert run.trigger_source.type == "api"

    # Filters: by recipient and by status.
    [for_ada] = client.workflow_recipient_runs.list(workflow=workflow, recipient=ada).items
    assert for_ada.recipient == ada
    completed = client.workflow_recipient_runs.list(workflow=workflow, status=["completed"]).items
    assert {run.id for run in completed} == {run.id for run in runs}
    assert client.workflow_recipient_runs.list(workflow=workflow, status=["cancelled"]).items == []

    detail = client.workflow_recipient_runs.get(for_ada.id)
    assert detail.id == for_ada.id
    assert detail.status == "completed"
    assert detail.workflow_run_id == trigger.workflow_run_id
    assert detail.events, "a completed run has a run log"
    assert len({event.id for event in detail.events}) == len(detail.events)
    assert all(event.status in ("ok", "error") for event in detail.events)
    assert any(event.step_ref == "feed" for event in detail.events)
    assert not any(event.status == "error" for event in detail.events)

    with pytest.raises(knockapi.NotFoundError):
        client.workflow_recipient_runs.get(unique("missing-run"))


def test_recipient_runs_filtered_by_object_reference_errors_and_time(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step(ref="feed")], prefix="runfilters")
    # A user and an object that share an id are two recipients.
    shared, collection = unique("shared"), unique("projects")
    client.objects.set(collection, shared, name="Shared")
    client.workflows.trigger(workflow, recipients=[shared, {"id": shared, "collection": collection}])
    assert len(wait_for_runs(client, workflow, 2)) == 2

    def listed(**filters: object) -> list[knockapi.types.WorkflowRecipientRun]:
        return client.workflow_recipient_runs.list(workflow=workflow, **filters).items  # type: ignore[arg-type]

    [user_run] = listed(recipient=shared)
    assert user_run.recipient == shared
    [object_run] = listed(recipient={"id": shared, "collection": collection})
    assert not isinstance(object_run.recipient, str)
    assert (object_run.recipient.id, object_run.recipient.collection) == (shared, collection)

    assert len(listed(has_errors=False)) == 2
    assert listed(has_errors=True) == []
    now = datetime.now(timezone.utc)
    assert len(listed(starting_at=now - timedelta(hours=1))) == 2
    assert listed(starting_at=now + timedelta(hours=1)) == []
    assert len(listed(ending_at=now + timedelta(hours=1))) == 2
    assert listed(ending_at=now - timedelta(hours=1)) == []
