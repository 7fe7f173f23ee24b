//! Recipient documents read and written many at a time, on both backends: a page of
//! owners in one read, bulk writes with their bulk operation, and documents written in a
//! trigger's transaction.

mod common;

use common::*;
use hark_store::*;
use serde_json::json;

contract!(
    documents_of_many_owners_in_one_read,
    bulk_put_replaces_and_records_the_operation,
    trigger_writes_inline_documents_with_its_runs,
);

fn user(id: &str) -> Owner {
    Owner::User(id.to_string())
}

async fn documents_of_many_owners_in_one_read(f: Fixture) {
    let other_env = f
        .store
        .environment_by_slug("production")
        .await
        .expect("lookup")
        .expect("production exists")
        .id;
    let prefs = DocumentKind::Preferences;
    for (owner, key, data) in [
        (user("ada"), "default", json!({"workflows": {"a": false}})),
        (
            user("ada"),
            "acme",
            json!({"channel_types": {"sms": false}}),
        ),
        (user("bob"), "default", json!({"categories": {"c": true}})),
        (
            Owner::Environment,
            "default",
            json!({"workflows": {"e": false}}),
        ),
    ] {
        f.store
            .put_document(&f.env, &owner, prefs, key, &data, 10)
            .await
            .expect("put");
    }
    f.store
        .put_document(
            &f.env,
            &user("ada"),
            DocumentKind::ChannelData,
            "push",
            &json!({"tokens": ["t"]}),
            10,
        )
        .await
        .expect("put channel data");
    f.store
        .put_document(&other_env, &user("bob"), prefs, "other", &json!({}), 10)
        .await
        .expect("put elsewhere");
    let docs = f
        .store
        .list_documents_of(&f.env, &[user("bob"), user("ada"), user("cy")], prefs)
        .await
        .expect("list");
    let seen: Vec<(String, String)> = docs
        .iter()
        .map(|(owner, d)| (owner.clone(), d.key.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("user:ada".to_string(), "acme".to_string()),
            ("user:ada".to_string(), "default".to_string()),
            ("user:bob".to_string(), "default".to_string()),
        ],
        "only this environment, this kind and these owners, ordered"
    );
    assert_eq!(docs[2].1.data, json!({"categories": {"c": true}}));
    assert!(f
        .store
        .list_documents_of(&f.env, &[], prefs)
        .await
        .expect("empty list")
        .is_empty());
    let env_default = f
        .store
        .get_document(&f.env, &Owner::Environment, prefs, "default")
        .await
        .expect("get")
        .expect("environment default stored");
    assert_eq!(env_default.data, json!({"workflows": {"e": false}}));
}

async fn bulk_put_replaces_and_records_the_operation(f: Fixture) {
    let prefs = DocumentKind::Preferences;
    f.store
        .put_document(
            &f.env,
            &user("ada"),
            prefs,
            "default",
            &json!({"old": 1}),
            10,
        )
        .await
        .expect("put");
    let data = json!({"workflows": {"news": false}});
    let op = f
        .store
        .bulk_put_documents(
            &f.env,
            &[user("ada"), user("bob")],
            prefs,
            "default",
            &data,
            "users.set_preferences",
            20,
        )
        .await
        .expect("bulk put");
    assert_eq!(op.name, "users.set_preferences");
    assert_eq!(op.status, "completed");
    assert_eq!(op.success_count, 2);
    let stored = f
        .store
        .get_bulk_operation(&f.env, &op.id)
        .await
        .expect("get op")
        .expect("op recorded");
    assert_eq!(stored.processed_rows, 2);
    for id in ["ada", "bob"] {
        let doc = f
            .store
            .get_document(&f.env, &user(id), prefs, "default")
            .await
            .expect("get")
            .expect("written");
        assert_eq!(doc.data, data, "{id}: replaced");
        assert_eq!(doc.updated_at, 20);
    }
}

async fn trigger_writes_inline_documents_with_its_runs(f: Fixture) {
    let prefs = DocumentKind::Preferences;
    let write = |run_id: &str, hash: &str, data: serde_json::Value| TriggerWrite {
        environment_id: f.env.clone(),
        workflow_key: "w".into(),
        workflow_version: 1,
        workflow_run_id: run_id.to_string(),
        actor: None,
        tenant: None,
        data: json!({}),
        cancellation_key: None,
        recipients: vec!["ada".into()],
        inline_users: vec![],
        inline_objects: vec![],
        inline_documents: vec![(user("ada"), prefs, "default".into(), data)],
        fan_outs: vec![],
        idempotency: Some(IdempotencyClaim {
            key: "k".into(),
            request_hash: hash.to_string(),
            response: json!({"workflow_run_id": run_id}),
            not_before: 0,
        }),
        state: json!({}),
        frequency: TriggerFrequency::EveryTrigger,
        lease: None,
        now: 100,
    };
    let first = write(
        &hark_core::new_id(),
        "h1",
        json!({"workflows": {"w": false}}),
    );
    assert_eq!(
        f.store.create_trigger(&first).await.expect("trigger"),
        TriggerOutcome::Accepted
    );
    let doc = f
        .store
        .get_document(&f.env, &user("ada"), prefs, "default")
        .await
        .expect("get")
        .expect("written with the trigger");
    assert_eq!(doc.data, json!({"workflows": {"w": false}}));
    // The same key with another body is refused and writes nothing.
    let reused = write(
        &hark_core::new_id(),
        "h2",
        json!({"workflows": {"w": true}}),
    );
    assert_eq!(
        f.store.create_trigger(&reused).await.expect("trigger"),
        TriggerOutcome::IdempotencyKeyReused
    );
    let doc = f
        .store
        .get_document(&f.env, &user("ada"), prefs, "default")
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(doc.data, json!({"workflows": {"w": false}}), "unchanged");
}
