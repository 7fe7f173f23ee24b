"""`Idempotency-Key` on workflow triggers: replays answer the same run, a new body is refused."""

from __future__ import annotations

from typing import Callable

import knockapi
import pytest

from support import feed_step, unique, wait_for_runs


def test_same_key_and_body_is_one_run(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step()], prefix="idem")
    user_id = unique("idem-user")
    key = unique("idem-key")
    body = {"recipients": [{"id": user_id, "name": "Ada"}], "data": {"n": 1}}

    first = client.workflows.with_raw_response.trigger(workflow, **body, idempotency_key=key)
    second = client.workflows.with_raw_response.trigger(workflow, **body, idempotency_key=key)

    assert first.status_code == second.status_code == 200
    assert first.parse().workflow_run_id == second.parse().workflow_run_id
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.headers.get("idempotent-replayed") in (None, "false")

    [run] = wait_for_runs(client, workflow, 1)
    assert run.workflow_run_id == first.parse().workflow_run_id
    assert len(client.users.list_messages(user_id).items) == 1


def test_same_key_with_another_body_is_refused(
    client: knockapi.Knock, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow([feed_step()], prefix="idem")
    user_id = unique("idem-user")
    key = unique("idem-key")
    recipients = [{"id": user_id, "name": "Ada"}]

    accepted = client.workflows.trigger(
        workflow, recipients=recipients, data={"n": 1}, idempotency_key=key
    )

    with pytest.raises(knockapi.APIStatusError) as caught:
        client.workflows.trigger(workflow, recipients=recipients, data={"n": 2}, idempotency_key=key)
    assert 400 <= caught.value.status_code < 500
    assert isinstance(caught.value.body, dict) and caught.value.body.get("code")

    [run] = wait_for_runs(client, workflow, 1)
    assert run.workflow_run_id == accepted.workflow_run_id
    [message] = client.users.list_messages(user_id).items
    assert message.data == {"n": 1}
