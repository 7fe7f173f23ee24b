//! Slack, Microsoft Teams and Discord against a loopback server answering like each: the
//! exact request, the classification, and webhook URLs kept out of the log.

mod provider_support;

use hark_channels::chat::discord::{self, DiscordConnection};
use hark_channels::chat::slack::{self, SlackConnection};
use hark_channels::chat::{teams, ChatMessage};
use hark_channels::testing::HttpSink;
use hark_channels::Outcome;
use provider_support::{assert_redacted, failure_cases, header, http, json_header};
use serde_json::{json, Value};

fn message(json_body: Option<Value>) -> ChatMessage {
    ChatMessage {
        text: "Order *7* shipped".into(),
        json_body,
        message_id: "msg_1".into(),
    }
}

fn blocks() -> Value {
    json!([{"type": "section", "text": {"type": "mrkdwn", "text": "Order *7* shipped"}}])
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).expect("json body")
}

fn bot() -> SlackConnection {
    SlackConnection::Bot {
        access_token: "xoxb-secret".into(),
        channel_id: "C123".into(),
    }
}

#[tokio::test]
async fn slack_bot_posts_block_kit() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"ok":true,"channel":"C123","ts":"1503435956.000247"}"#.into(),
    );
    let client = http(true);
    let base = sink.url("");
    let attempt = slack::send(&client, Some(&base), &bot(), &message(Some(blocks()))).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "slack");
    let r = &sink.requests()[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/chat.postMessage")
    );
    assert_eq!(header(r, "authorization"), "Bearer xoxb-secret");
    assert_eq!(header(r, "content-type"), "application/json; charset=utf-8");
    assert_eq!(
        body_json(&r.body),
        json!({"blocks": blocks(), "text": "Order *7* shipped", "channel": "C123"})
    );
    assert_redacted(&attempt, &["xoxb-secret"]);

    // The Web API reports most failures as 200 with `ok: false`.
    sink.push_response(
        200,
        json_header(),
        r#"{"ok":false,"error":"channel_not_found"}"#.into(),
    );
    let attempt = slack::send(&client, Some(&base), &bot(), &message(None)).await;
    assert_eq!(
        attempt.outcome,
        Outcome::Permanent {
            reason: "Slack error: channel_not_found".into()
        }
    );
    sink.push_response(
        200,
        json_header(),
        r#"{"ok":false,"error":"internal_error"}"#.into(),
    );
    let attempt = slack::send(&client, Some(&base), &bot(), &message(None)).await;
    assert!(matches!(attempt.outcome, Outcome::Retryable { .. }));
    assert_eq!(
        body_json(&sink.requests()[2].body)["text"],
        "Order *7* shipped"
    );

    failure_cases(
        (404, r#"{"ok":false,"error":"unknown_method"}"#),
        &["xoxb-secret"],
        |base| {
            let client = client.clone();
            async move { slack::send(&client, Some(&base), &bot(), &message(None)).await }
        },
    )
    .await;
}

#[tokio::test]
async fn slack_incoming_webhook_hides_its_url() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(200, vec![], "ok".into());
    let client = http(true);
    let hook = SlackConnection::IncomingWebhook {
        url: sink.url("/services/T1/B1/hooksecret"),
    };
    let attempt = slack::send(&client, None, &hook, &message(Some(blocks()))).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[0];
    assert_eq!(r.path, "/services/T1/B1/hooksecret");
    assert_eq!(
        body_json(&r.body),
        json!({"blocks": blocks(), "text": "Order *7* shipped"})
    );
    assert_eq!(attempt.request["path"], "/[REDACTED]");
    assert_redacted(&attempt, &["hooksecret"]);

    failure_cases((400, "invalid_payload"), &["hooksecret"], |base| {
        let client = client.clone();
        let hook = SlackConnection::IncomingWebhook {
            url: format!("{base}/services/T1/B1/hooksecret"),
        };
        async move { slack::send(&client, None, &hook, &message(None)).await }
    })
    .await;
}

#[tokio::test]
async fn teams_posts_an_adaptive_card() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(200, vec![], "1".into());
    let client = http(true);
    let hook = sink.url("/webhookb2/abc/IncomingWebhook/teamssecret");
    let attempt = teams::send(&client, &hook, &message(None)).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "microsoft_teams");
    let r = &sink.requests()[0];
    assert_eq!(r.path, "/webhookb2/abc/IncomingWebhook/teamssecret");
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(
        body_json(&r.body),
        json!({"type": "message", "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
            "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard", "version": "1.4",
                        "body": [{"type": "TextBlock", "text": "Order *7* shipped", "wrap": true}]}}]})
    );
    assert_redacted(&attempt, &["teamssecret"]);

    // A card in json_body is sent as the attachment's content.
    let card = json!({"type": "AdaptiveCard", "version": "1.5", "body": []});
    teams::send(&client, &hook, &message(Some(card.clone()))).await;
    assert_eq!(
        body_json(&sink.requests()[1].body)["attachments"][0]["content"],
        card
    );

    failure_cases(
        (400, "Summary or Text is required."),
        &["teamssecret"],
        |base| {
            let client = client.clone();
            let hook = format!("{base}/webhookb2/abc/IncomingWebhook/teamssecret");
            async move { teams::send(&client, &hook, &message(None)).await }
        },
    )
    .await;
}

#[tokio::test]
async fn discord_webhook_and_bot() {
    let sink = HttpSink::start().await.expect("sink");
    sink.push_response(
        200,
        json_header(),
        r#"{"id":"1","channel_id":"42","content":"Order *7* shipped"}"#.into(),
    );
    let client = http(true);
    let hook = DiscordConnection::IncomingWebhook {
        url: sink.url("/api/webhooks/42/discordsecret"),
    };
    let embeds = json!({"embeds": [{"title": "Order 7"}]});
    let attempt = discord::send(&client, None, &hook, &message(Some(embeds))).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    assert_eq!(attempt.service_name, "discord");
    let r = &sink.requests()[0];
    assert_eq!(r.path, "/api/webhooks/42/discordsecret");
    assert_eq!(r.query, "wait=true");
    assert_eq!(
        body_json(&r.body),
        json!({"embeds": [{"title": "Order 7"}], "content": "Order *7* shipped"})
    );
    assert_redacted(&attempt, &["discordsecret"]);

    let bot = DiscordConnection::Bot {
        bot_token: "bot-secret".into(),
        channel_id: "42".into(),
    };
    let base = sink.url("");
    let attempt = discord::send(&client, Some(&base), &bot, &message(None)).await;
    assert_eq!(attempt.outcome, Outcome::Sent);
    let r = &sink.requests()[1];
    assert_eq!(r.path, "/api/v10/channels/42/messages");
    assert_eq!(header(r, "authorization"), "Bot bot-secret");
    assert_redacted(&attempt, &["bot-secret"]);

    let bad = DiscordConnection::Bot {
        bot_token: "bot-secret".into(),
        channel_id: "../users/@me".into(),
    };
    let attempt = discord::send(&client, Some(&base), &bad, &message(None)).await;
    assert!(matches!(attempt.outcome, Outcome::Permanent { .. }));
    assert_eq!(sink.requests().len(), 2);

    failure_cases(
        (
            400,
            r#"{"message":"Cannot send an empty message","code":50006}"#,
        ),
        &["bot-secret"],
        |base| {
            let client = client.clone();
            let bot = bot.clone();
            async move { discord::send(&client, Some(&base), &bot, &message(None)).await }
        },
    )
    .await;
}

#[tokio::test]
async fn webhook_urls_from_channel_data_are_guarded() {
    let sink = HttpSink::start().await.expect("sink");
    let client = http(false);
    let hook = SlackConnection::IncomingWebhook {
        url: sink.url("/services/x"),
    };
    let attempt = slack::send(&client, None, &hook, &message(None)).await;
    assert!(matches!(attempt.outcome, Outcome::Permanent { .. }));
    let attempt = teams::send(&client, "http://169.254.169.254/x", &message(None)).await;
    assert!(matches!(attempt.outcome, Outcome::Permanent { .. }));
    assert!(sink.requests().is_empty());
}
