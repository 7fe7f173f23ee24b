//! What a closed batch hands to the run that continues: Knock's `activities`,
//! `total_activities`, `actors`, `total_actors`, and the merged trigger `data`.

use serde_json::{json, Map, Value};

/// Strings in merged batch data are cut to this many characters, as in Knock.
const MAX_MERGED_STRING: usize = 256;

/// One accumulated trigger, oldest first in the slices below.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity<'a> {
    pub run_id: &'a str,
    pub actor: Option<&'a str>,
    pub data: &'a Value,
    pub inserted_at: crate::Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchSummary {
    /// `{activities, total_activities, actors, total_actors}`; actors are ids here, the
    /// engine expands them to user objects when it renders.
    pub state: Value,
    /// The scalar keys of the rendered activities' data, later ones winning.
    pub merged_data: Value,
}

/// Summarises `items` (in arrival order). `render_limit` bounds `activities` and `actors`;
/// `order_desc` picks the last ones instead of the first, still listed oldest first.
pub fn summarize(items: &[Activity<'_>], render_limit: usize, order_desc: bool) -> BatchSummary {
    let rendered: &[Activity<'_>] = if order_desc && items.len() > render_limit {
        &items[items.len() - render_limit..]
    } else {
        &items[..items.len().min(render_limit)]
    };
    let mut unique_actors: Vec<&str> = Vec::new();
    for actor in items.iter().filter_map(|a| a.actor) {
        if !unique_actors.contains(&actor) {
            unique_actors.push(actor);
        }
    }
    let actors: Vec<&str> = if order_desc && unique_actors.len() > render_limit {
        unique_actors[unique_actors.len() - render_limit..].to_vec()
    } else {
        unique_actors.iter().take(render_limit).copied().collect()
    };
    let mut merged = Map::new();
    for activity in rendered {
        if let Value::Object(map) = activity.data {
            for (key, value) in map {
                let scalar = match value {
                    Value::String(s) if s.chars().count() > MAX_MERGED_STRING => {
                        Value::String(s.chars().take(MAX_MERGED_STRING).collect())
                    }
                    Value::Object(_) | Value::Array(_) => continue,
                    other => other.clone(),
                };
                merged.insert(key.clone(), scalar);
            }
        }
    }
    let activities: Vec<Value> = rendered
        .iter()
        .map(|a| {
            json!({
                "id": a.run_id,
                "actor": a.actor,
                "data": a.data,
                "inserted_at": crate::time::rfc3339(a.inserted_at),
            })
        })
        .collect();
    BatchSummary {
        state: json!({
            "activities": activities,
            "total_activities": items.len(),
            "actors": actors,
            "total_actors": unique_actors.len(),
        }),
        merged_data: Value::Object(merged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_first_or_last_activities_and_merges_scalars() {
        let datas: Vec<Value> = (0..5)
            .map(|i| json!({"n": i, "page": format!("p{i}"), "nested": {"x": i}, "long": "y".repeat(300)}))
            .collect();
        let actors = ["a", "b", "a", "c", "b"];
        let ids: Vec<String> = (0..5).map(|i| format!("run{i}")).collect();
        let items: Vec<Activity<'_>> = (0..5)
            .map(|i| Activity {
                run_id: &ids[i],
                actor: Some(actors[i]),
                data: &datas[i],
                inserted_at: i as i64,
            })
            .collect();
        let first = summarize(&items, 2, false);
        assert_eq!(first.state["total_activities"], 5);
        assert_eq!(first.state["total_actors"], 3);
        assert_eq!(first.state["actors"], json!(["a", "b"]));
        assert_eq!(first.state["activities"][0]["id"], "run0");
        assert_eq!(first.state["activities"][1]["id"], "run1");
        assert_eq!(first.merged_data["n"], 1);
        assert!(first.merged_data.get("nested").is_none());
        assert_eq!(first.merged_data["long"].as_str().map(str::len), Some(256));
        let last = summarize(&items, 2, true);
        assert_eq!(last.state["activities"][0]["id"], "run3");
        assert_eq!(last.state["activities"][1]["id"], "run4");
        assert_eq!(last.state["actors"], json!(["b", "c"]));
        assert_eq!(last.merged_data["n"], 4);
    }
}
