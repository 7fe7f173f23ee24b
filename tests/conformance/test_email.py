"""An email step delivers through the configured SMTP provider (a local sink)."""

from __future__ import annotations

from typing import Callable

import knockapi

from support import Mgmt, SmtpSink, email_step, unique, wait_for, wait_for_runs


def test_email_step_sends_one_email_per_recipient(
    client: knockapi.Knock, mgmt: Mgmt, smtp: SmtpSink, make_workflow: Callable[..., str]
) -> None:
    workflow = make_workflow(
        [
            email_step(
                subject="Welcome {{ recipient.name }} [{{ recipient.id }}]",
                html_body="<html><body><p>Hi {{ recipient.name }}, your code is {{ data.code }}.</p></body></html>",
            )
        ],
        prefix="email",
    )
    ada, grace, nomail = unique("ada"), unique("grace"), unique("nomail")
    recipients = {
        ada: {"id": ada, "name": "Ada", "email": f"{ada}@example.com"},
        grace: {"id": grace, "name": "Grace", "email": f"{grace}@example.com"},
    }

    client.workflows.trigger(
        workflow,
        recipients=[*recipients.values(), {"id": nomail, "name": "No Mail"}],
        data={"code": "7391"},
    )

    for user in recipients.values():
        wait_for(lambda: smtp.messages_to(user["email"]), f"an email to {user['email']}")
    wait_for_runs(client, workflow, 3)

    email_channel_id = mgmt.channel("email")["id"]
    for user_id, user in recipients.items():
        [received] = smtp.messages_to(user["email"])  # exactly one
        assert received.subject == f"Welcome {user['name']} [{user_id}]"
        assert received.mail_from == "hark@example.com"
        assert "hark@example.com" in str(received.message["from"])
        assert user["email"] in str(received.message["to"])
        assert f"Hi {user['name']}, your code is 7391." in received.html

        [message] = client.users.list_messages(user_id).items
        assert message.channel_id == email_channel_id
        assert message.source.key == workflow
        assert message.recipient == user_id
        wait_for(
            lambda: client.messages.get(message.id).status in ("sent", "delivered"),
            f"email message {message.id} to be sent",
        )

    # A recipient without an email address gets neither an email nor a message.
    assert not [m for m in smtp.all() if nomail in m.subject]
    assert client.users.list_messages(nomail).items == []
