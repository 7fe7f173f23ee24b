"""`GET /v1/messages/{id}/content` for every channel type, read through the official SDK.

The workflow runs in sandbox mode: each channel step renders and stores its message
(`not_sent`) without calling a provider, so the suite stays offline.
"""

from __future__ import annotations

from typing import Any, Callable

import knockapi
from knockapi.types import message_contents as mc

from support import Mgmt, unique, wait_for, wait_for_runs


def _step(ref: str, channel_key: str, **template: Any) -> dict[str, Any]:
    return {"type": "channel", "ref": ref, "channel_key": channel_key, "template": template}


def _contents(client: knockapi.Knock, user_id: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each of the user's messages by channel id: the SDK's parsed content and the raw JSON."""
    out = {}
    for message in client.users.list_messages(user_id).items:
        parsed = client.messages.get_content(message.id)
        assert parsed.message_id == message.id
        raw = client.messages.with_raw_response.get_content(message.id).http_response.json()
        out[message.channel_id] = (parsed, raw["data"])
    return out


def test_content_of_every_channel_type(
    client: knockapi.Knock, mgmt: Mgmt, make_workflow: Callable[..., str]
) -> None:
    layout = unique("layout")
    mgmt.request(
        "PUT",
        f"/v1/email_layouts/{layout}",
        json={
            "email_layout": {
                "name": "Conformance",
                "html_layout": "<html><body>{{ content }}<footer>{{ footer_links[0].text }}</footer></body></html>",
                "text_layout": "{{ content }} -- {{ footer_links[0].url }}",
                "footer_links": [{"text": "Unsubscribe", "url": "https://example.com/u"}],
            }
        },
    )
    workflow = make_workflow(
        [
            _step("feed", "in-app-feed", markdown_body="Hello **{{ recipient.name }}**"),
            _step(
                "email",
                "email",
                subject="Order {{ data.order }}",
                html_body="<p>Order {{ data.order }}</p>",
                text_body="Order {{ data.order }}",
                settings={"layout_key": layout},
            ),
            _step("sms", "sms", text_body="Code {{ data.order }}"),
            _step("push", "push", title="Order {{ data.order }}", text_body="Shipped"),
            _step("chat", "slack", markdown_body="Order *{{ data.order }}*"),
            _step(
                "webhook",
                "webhook",
                method="post",
                url="https://hooks.example.com/orders",
                body='{"order": {{ data.order }}}',
            ),
        ],
        prefix="content",
    )
    ada = unique("ada")
    client.users.update(ada, name="Ada", email=f"{ada}@example.com", phone_number="+15555550123")
    client.users.set_channel_data(ada, "push", data={"tokens": ["ExponentPushToken[conformance]"]})
    client.users.set_channel_data(
        ada,
        "slack",
        data={"connections": [{"incoming_webhook": {"url": "https://hooks.slack.com/services/T/B/x"}}]},
    )

    client.workflows.trigger(
        workflow, recipients=[ada], data={"order": 7}, settings={"sandbox_mode": True}
    )
    wait_for_runs(client, workflow, 1)
    channels = {key: mgmt.channel(key)["id"] for key in ("in-app-feed", "email", "sms", "push", "slack", "webhook")}
    def all_messages() -> dict[str, tuple[Any, dict[str, Any]]] | None:
        found = _contents(client, ada)
        return found if len(found) == len(channels) else None

    contents = wait_for(all_messages, "one message per channel step")
    assert set(contents) == set(channels.values())

    # Each variant validated strictly against the SDK's model for its type.
    feed, raw = contents[channels["in-app-feed"]]
    assert isinstance(feed.data, mc.DataMessageInAppFeedContent)
    mc.DataMessageInAppFeedContent.model_validate(raw)
    assert feed.data.api_typename == "MessageInAppFeedContent"
    body = feed.data.blocks[0]
    assert (body.type, body.name, body.content) == ("markdown", "body", "Hello **Ada**")
    assert body.rendered.strip() == "<p>Hello <strong>Ada</strong></p>"

    email, raw = contents[channels["email"]]
    assert isinstance(email.data, mc.DataMessageEmailContent)
    mc.DataMessageEmailContent.model_validate(raw)
    assert email.data.api_typename == "MessageEmailContent"
    assert email.data.subject_line == "Order 7"
    assert email.data.html_body == "<html><body><p>Order 7</p><footer>Unsubscribe</footer></body></html>"
    assert email.data.text_body == "Order 7 -- https://example.com/u"
    assert email.data.from_ == "hark@example.com"
    assert email.data.to == f"{ada}@example.com"

    sms, raw = contents[channels["sms"]]
    assert isinstance(sms.data, mc.DataMessageSMSContent)
    mc.DataMessageSMSContent.model_validate(raw)
    assert (sms.data.api_typename, sms.data.body, sms.data.to) == (
        "MessageSmsContent",
        "Code 7",
        "+15555550123",
    )

    push, raw = contents[channels["push"]]
    assert isinstance(push.data, mc.DataMessagePushContent)
    mc.DataMessagePushContent.model_validate(raw)
    assert push.data.api_typename == "MessagePushContent"
    assert (push.data.title, push.data.body) == ("Order 7", "Shipped")
    assert push.data.token == "ExponentPushToken[conformance]"
    assert push.data.data == {"order": 7}

    chat, raw = contents[channels["slack"]]
    assert isinstance(chat.data, mc.DataMessageChatContent)
    mc.DataMessageChatContent.model_validate(raw)
    assert chat.data.api_typename == "MessageChatContent"
    assert chat.data.template.summary == "Order *7*"
    [block] = chat.data.template.blocks or []
    assert (block.type, block.name, block.content) == ("markdown", "body", "Order *7*")
    assert isinstance(chat.data.connection, dict)

    # `MessageHttpContent` is not among the SDK's variants; the raw shape is Hark's.
    _, raw = contents[channels["webhook"]]
    assert raw["__typename"] == "MessageHttpContent"
    assert (raw["method"], raw["url"], raw["body"]) == ("POST", "https://hooks.example.com/orders", '{"order": 7}')
