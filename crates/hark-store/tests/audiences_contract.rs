//! Audience definitions on both backends: upsert keeps type and creation time, archive
//! hides and restores, listing pages by key, dynamic ones are found for membership checks.

mod common;

use common::*;
use hark_store::*;
use serde_json::json;

contract!(audience_definitions_upsert_archive_and_list);

fn audience(key: &str, audience_type: &str) -> AudienceDefinition {
    AudienceDefinition {
        key: key.to_string(),
        name: key.to_uppercase(),
        description: None,
        audience_type: audience_type.to_string(),
        segments: if audience_type == "dynamic" {
            json!([{"conditions": [{"property": "recipient.plan", "operator": "equal_to", "argument": "pro"}]}])
        } else {
            json!([])
        },
        archived_at: None,
        created_at: 0,
        updated_at: 0,
    }
}

async fn audience_definitions_upsert_archive_and_list(f: Fixture) {
    let store = &f.store;
    let first = store
        .upsert_audience(&f.env, &audience("pro", "dynamic"), 10)
        .await
        .expect("create");
    assert_eq!((first.created_at, first.updated_at), (10, 10));
    let mut renamed = audience("pro", "dynamic");
    renamed.name = "Pro teams".into();
    renamed.description = Some("paying".into());
    let second = store
        .upsert_audience(&f.env, &renamed, 20)
        .await
        .expect("update");
    assert_eq!(second.created_at, 10, "creation time kept");
    assert_eq!(second.updated_at, 20);
    assert_eq!(second.description.as_deref(), Some("paying"));
    store
        .upsert_audience(&f.env, &audience("beta", "static"), 30)
        .await
        .expect("static");
    let other_env = store
        .environment_by_slug("production")
        .await
        .expect("lookup")
        .expect("production exists")
        .id;
    store
        .upsert_audience(&other_env, &audience("elsewhere", "dynamic"), 30)
        .await
        .expect("other env");

    let page = store.list_audiences(&f.env, None, 1).await.expect("list");
    assert_eq!(
        page.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
        ["beta"]
    );
    let rest = store
        .list_audiences(&f.env, Some("beta"), 10)
        .await
        .expect("list after");
    assert_eq!(
        rest.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(),
        ["pro"]
    );
    let dynamic = store.dynamic_audiences(&f.env).await.expect("dynamic");
    assert_eq!(dynamic.len(), 1);
    assert_eq!(dynamic[0].segments, audience("pro", "dynamic").segments);

    assert!(store
        .archive_audience(&f.env, "pro", 40)
        .await
        .expect("archive"));
    assert!(!store
        .archive_audience(&f.env, "pro", 41)
        .await
        .expect("again"));
    assert!(store
        .dynamic_audiences(&f.env)
        .await
        .expect("dynamic")
        .is_empty());
    let archived = store
        .get_audience(&f.env, "pro")
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(archived.archived_at, Some(40));
    assert_eq!(
        store
            .list_audiences(&f.env, None, 10)
            .await
            .expect("list")
            .len(),
        1
    );
    let restored = store
        .upsert_audience(&f.env, &audience("pro", "dynamic"), 50)
        .await
        .expect("restore");
    assert_eq!(restored.archived_at, None);
    assert!(store
        .get_audience(&f.env, "nope")
        .await
        .expect("get")
        .is_none());
}
