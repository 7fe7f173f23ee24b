//! Static audiences through the API, and audience conditions in workflows, on both stores.

mod support;

use serde_json::json;
use support::{feed_step, Backend, TestServer};

on_both_stores!(audience_members_and_conditions);

async fn audience_members_and_conditions(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/audiences/vip/members",
            Some(json!({"members": [{"user": {"id": "ada", "name": "Ada"}}, {"user": {"id": "bob"}, "tenant": "acme"}]})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, ada) = s.call("GET", "/v1/users/ada", None).await;
    assert_eq!(ada["name"], "Ada", "inline users are identified");
    let (_, page) = s
        .call("GET", "/v1/audiences/vip/members?page_size=1", None)
        .await;
    assert_eq!(page["entries"][0]["__typename"], "AudienceMember");
    let after = page["page_info"]["after"]
        .as_str()
        .expect("more")
        .to_string();
    let (_, rest) = s
        .call(
            "GET",
            &format!("/v1/audiences/vip/members?page_size=1&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(1));
    let (status, body) = s
        .call(
            "POST",
            "/v1/audiences/vip/members",
            Some(json!({"members": [{"user": {}}]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "members[0].user.id");

    s.put_workflow(
        "perk",
        json!([{"type": "channel", "ref": "f", "channel_key": "in-app-feed",
                "conditions": {"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": "vip"}]},
                "template": {"markdown_body": "Perk"}},
               feed_step("all", "Everyone")]),
    )
    .await;
    s.trigger("perk", json!({"recipients": ["ada", "bob", "cy"]}))
        .await;
    s.trigger("perk", json!({"recipients": ["bob"], "tenant": "acme"}))
        .await;
    s.run_engine().await;
    let mut ada = s.feed_texts("ada").await;
    ada.sort();
    assert_eq!(ada, vec!["Everyone", "Perk"]);
    assert_eq!(s.feed_texts("cy").await, vec!["Everyone"]);
    let bob = s.feed_texts("bob").await;
    assert_eq!(
        bob.iter().filter(|t| *t == "Perk").count(),
        1,
        "member only in tenant acme: {bob:?}"
    );
    let (status, _) = s
        .call(
            "DELETE",
            "/v1/audiences/vip/members",
            Some(json!({"members": [{"user": {"id": "ada"}}]})),
        )
        .await;
    assert_eq!(status, 204);
    s.trigger("perk", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    assert_eq!(s.feed_texts("ada").await.len(), 3, "no perk after leaving");
}
