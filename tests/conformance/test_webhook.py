"""A webhook step sends the rendered request to a local HTTP receiver."""

from __future__ import annotations

from typing import Callable

import knockapi

from support import Mgmt, WebhookReceiver, unique, wait_for, webhook_step


def test_webhook_step_delivers_the_rendered_request(
    client: knockapi.Knock,
    mgmt: Mgmt,
    webhooks: WebhookReceiver,
    make_workflow: Callable[..., str],
) -> None:
    user_id = unique("hook-user")
    path = f"/hook/{user_id}"
    workflow = make_workflow(
        [
            webhook_step(
                webhooks.url(path),
                method="post",
                headers={"X-Test": "{{ data.x }}"},
                body='{"user":"{{ recipient.id }}","x":"{{ data.x }}"}',
            )
        ],
        prefix="webhook",
    )

    client.workflows.trigger(
        workflow, recipients=[{"id": user_id, "name": "Hook"}], data={"x": "forty-two"}
    )

    [request] = wait_for(lambda: webhooks.requests_to(path), f"a request to {path}")
    assert request.method == "POST"
    assert request.headers["x-test"] == "forty-two"
    assert request.json() == {"user": user_id, "x": "forty-two"}

    [message] = wait_for(
        lambda: client.users.list_messages(user_id).items, f"a webhook message for {user_id}"
    )
    assert message.channel_id == mgmt.channel("webhook")["id"]
    delivered = wait_for(
        lambda: (m := client.messages.get(message.id)).status == "delivered" and m,
        f"webhook message {message.id} to be delivered",
    )
    assert delivered.source.key == workflow

    logs = wait_for(
        lambda: client.messages.list_delivery_logs(message.id).items,
        f"a delivery log for {message.id}",
    )
    log = logs[-1]
    assert log.request.method == "POST"
    assert log.request.path == path
    assert log.response.status == 200
    assert log.service_name
    # Exactly one request: a delivered message is not sent again.
    assert len(webhooks.requests_to(path)) == 1
