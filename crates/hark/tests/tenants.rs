//! Tenants through the API, and tenants in triggers and templates, on both stores.

mod support;

use serde_json::json;
use support::{Backend, TestServer};

on_both_stores!(
    tenants_crud_list_and_bulk,
    inline_tenant_scopes_messages_and_templates
);

async fn tenants_crud_list_and_bulk(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    let (status, tenant) = s
        .call(
            "PUT",
            "/v1/tenants/acme",
            Some(json!({"name": "Acme", "plan": "pro", "settings": {"branding": {"primary_color": "#f00"}}})),
        )
        .await;
    assert_eq!(status, 200, "{tenant}");
    assert_eq!(tenant["__typename"], "Tenant");
    assert_eq!(tenant["id"], "acme");
    assert_eq!(tenant["plan"], "pro");
    assert_eq!(tenant["settings"]["branding"]["primary_color"], "#f00");
    // Given properties replace stored ones; null removes; others stay.
    let (_, tenant) = s
        .call(
            "PUT",
            "/v1/tenants/acme",
            Some(json!({"plan": null, "size": 3})),
        )
        .await;
    assert_eq!(tenant["name"], "Acme");
    assert_eq!(tenant["size"], 3);
    assert!(tenant.get("plan").is_none(), "{tenant}");
    let (status, body) = s
        .call("PUT", "/v1/tenants/bad", Some(json!({"settings": 5})))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "tenant.settings");
    let (status, _) = s.call("GET", "/v1/tenants/bad", None).await;
    assert_eq!(status, 404, "a refused write stores nothing");

    let (status, op) = s
        .call(
            "POST",
            "/v1/tenants/bulk/set",
            Some(json!({"tenants": ["t1", {"id": "t2", "name": "Two"}]})),
        )
        .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["status"], "completed");
    let (_, list) = s.call("GET", "/v1/tenants?page_size=2", None).await;
    assert_eq!(list["entries"].as_array().map(Vec::len), Some(2));
    let after = list["page_info"]["after"]
        .as_str()
        .expect("more pages")
        .to_string();
    let (_, rest) = s
        .call(
            "GET",
            &format!("/v1/tenants?page_size=2&after={after}"),
            None,
        )
        .await;
    assert_eq!(rest["entries"][0]["id"], "t2");
    let (_, one) = s.call("GET", "/v1/tenants?tenant_id=t1", None).await;
    assert_eq!(one["entries"][0]["id"], "t1");
    let (_, named) = s.call("GET", "/v1/tenants?name=Acme", None).await;
    assert_eq!(named["entries"].as_array().map(Vec::len), Some(1));

    let (status, _) = s
        .call(
            "POST",
            "/v1/tenants/bulk/delete?tenant_ids[]=t1&tenant_ids[]=t2",
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s.call("DELETE", "/v1/tenants/acme", None).await;
    assert_eq!(status, 204);
    let (status, body) = s.call("GET", "/v1/tenants/acme", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "resource_missing");
    let (_, list) = s.call("GET", "/v1/tenants", None).await;
    assert_eq!(list["entries"], json!([]));
}

async fn inline_tenant_scopes_messages_and_templates(backend: Backend) {
    let s = TestServer::start(backend, vec![]).await;
    s.put_workflow(
        "branded",
        json!([{"type": "channel", "ref": "f", "channel_key": "in-app-feed",
                "template": {"markdown_body": "{{ tenant.name }} {{ vars.branding.primary_color }} {{ tenant.id }}"}}]),
    )
    .await;
    let (status, body) = s
        .trigger(
            "branded",
            json!({"recipients": ["ada"], "tenant": {"id": "acme", "name": "Acme", "settings": {"branding": {"primary_color": "#f00"}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.trigger("branded", json!({"recipients": ["ada"]})).await;
    s.run_engine().await;
    let (_, tenant) = s.call("GET", "/v1/tenants/acme", None).await;
    assert_eq!(tenant["name"], "Acme", "the inline tenant was stored");
    let scoped = s.feed("ada", "?tenant=acme").await;
    assert_eq!(scoped["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        scoped["entries"][0]["blocks"][0]["content"],
        "Acme #f00 acme"
    );
    assert_eq!(scoped["entries"][0]["tenant"], "acme");
    let unscoped = s.feed("ada", "?has_tenant=false").await;
    assert_eq!(unscoped["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(unscoped["entries"][0]["blocks"][0]["content"], "  ");
    let (status, body) = s
        .trigger(
            "branded",
            json!({"recipients": ["ada"], "tenant": {"name": "no id"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}
