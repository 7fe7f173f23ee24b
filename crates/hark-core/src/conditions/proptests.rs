use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        "-?[0-9]{1,6}(\\.[0-9]{1,3})?",
        Just(String::new()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
        Just("02134".to_owned()),
        Just("vip".to_owned()),
        Just("2025-06-15T12:00:00Z".to_owned()),
        Just("2025-06-15".to_owned()),
        Just("7 days ago".to_owned()),
        Just("data.b".to_owned()),
        Just("{{ data.c }}".to_owned()),
        Just("[\"vip\", 1]".to_owned()),
    ]
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1_000i64..1_000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        arb_text().prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]|\\PC{0,4}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Arguments as the wire carries them, minus `$message.` status tokens, which are the one
/// documented exception to negation (a missing message fails both forms).
fn arb_argument() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        arb_json().prop_map(Some),
        arb_text().prop_map(|text| Some(Value::String(text))),
    ]
    .prop_filter(
        "status tokens are tested separately",
        |argument| !matches!(argument, Some(Value::String(text)) if text.starts_with("$message.")),
    )
}

fn arb_variable() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("data.a".to_owned()),
        Just("data.b".to_owned()),
        Just("data.missing".to_owned()),
        Just("data.a.x".to_owned()),
        Just("data.a[0]".to_owned()),
        Just("recipient".to_owned()),
        "\\PC{0,10}",
    ]
}

fn arb_root() -> impl Strategy<Value = Value> {
    (arb_json(), arb_json(), arb_json())
        .prop_map(|(a, b, c)| json!({"data": {"a": a, "b": b, "c": c}, "recipient": {"id": "u1"}}))
}

fn arb_audiences() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(arb_text(), 0..3)
}

fn arb_operator() -> impl Strategy<Value = Operator> {
    prop::sample::select(Operator::ALL.to_vec())
}

fn arb_condition() -> impl Strategy<Value = Condition> {
    (arb_variable(), arb_operator(), arb_argument()).prop_map(|(variable, operator, argument)| {
        Condition {
            variable,
            operator,
            argument,
        }
    })
}

const NEGATIONS: [(Operator, Operator); 7] = [
    (Operator::EqualTo, Operator::NotEqualTo),
    (Operator::Contains, Operator::NotContains),
    (Operator::ContainsAll, Operator::NotContainsAll),
    (Operator::Empty, Operator::NotEmpty),
    (Operator::Exists, Operator::NotExists),
    (Operator::IsTimestamp, Operator::IsNotTimestamp),
    (Operator::IsAudienceMember, Operator::IsNotAudienceMember),
];

fn passes(
    root: &Value,
    audiences: &[String],
    variable: &str,
    operator: Operator,
    argument: Option<Value>,
    now: Millis,
) -> bool {
    let scope = JsonScope { root, audiences };
    Condition {
        variable: variable.to_owned(),
        operator,
        argument,
    }
    .evaluate(&scope, now)
    .passed
}

const NOW: Millis = 1_750_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn negated_operators_are_exact_negations(
        root in arb_root(),
        audiences in arb_audiences(),
        variable in arb_variable(),
        argument in arb_argument(),
        pair in prop::sample::select(NEGATIONS.to_vec()),
    ) {
        let (positive, negative) = pair;
        let yes = passes(&root, &audiences, &variable, positive, argument.clone(), NOW);
        let no = passes(&root, &audiences, &variable, negative, argument, NOW);
        prop_assert_ne!(yes, no);
    }

    #[test]
    fn equal_to_is_symmetric_for_scalars(a in arb_scalar(), b in arb_scalar()) {
        let root = json!({"data": {"a": a, "b": b}});
        let ab = passes(&root, &[], "data.a", Operator::EqualTo, Some(json!("data.b")), NOW);
        let ba = passes(&root, &[], "data.b", Operator::EqualTo, Some(json!("data.a")), NOW);
        prop_assert_eq!(ab, ba);
    }

    #[test]
    fn equal_to_is_reflexive_for_present_values(a in arb_json()) {
        let root = json!({"data": {"a": a.clone(), "b": a}});
        prop_assert!(passes(&root, &[], "data.a", Operator::EqualTo, Some(json!("data.b")), NOW));
    }

    #[test]
    fn greater_than_mirrors_less_than_for_numbers(
        a in prop_oneof![any::<i64>().prop_map(Value::from), (-1.0e9f64..1.0e9).prop_map(Value::from)],
        b in prop_oneof![any::<i64>().prop_map(Value::from), (-1.0e9f64..1.0e9).prop_map(Value::from)],
        a_as_text in any::<bool>(),
    ) {
        // Numeric text must order exactly like the number it spells.
        let a = if a_as_text { Value::String(a.to_string()) } else { a };
        let root = json!({"data": {"a": a, "b": b}});
        let check = |op_ab: Operator, op_ba: Operator| {
            passes(&root, &[], "data.a", op_ab, Some(json!("data.b")), NOW)
                == passes(&root, &[], "data.b", op_ba, Some(json!("data.a")), NOW)
        };
        prop_assert!(check(Operator::GreaterThan, Operator::LessThan));
        prop_assert!(check(Operator::GreaterThanOrEqualTo, Operator::LessThanOrEqualTo));
        // Numbers are totally ordered: exactly one of <, =, > holds.
        let lt = passes(&root, &[], "data.a", Operator::LessThan, Some(json!("data.b")), NOW);
        let eq = passes(&root, &[], "data.a", Operator::EqualTo, Some(json!("data.b")), NOW);
        let gt = passes(&root, &[], "data.a", Operator::GreaterThan, Some(json!("data.b")), NOW);
        prop_assert_eq!(u8::from(lt) + u8::from(eq) + u8::from(gt), 1);
    }

    #[test]
    fn ordering_is_antisymmetric_for_any_values(a in arb_json(), b in arb_json()) {
        let root = json!({"data": {"a": a, "b": b}});
        let gt = passes(&root, &[], "data.a", Operator::GreaterThan, Some(json!("data.b")), NOW);
        let lt = passes(&root, &[], "data.b", Operator::LessThan, Some(json!("data.a")), NOW);
        prop_assert_eq!(gt, lt);
    }

    #[test]
    fn timestamps_are_either_before_or_on_or_after(
        at in -62_000_000_000_000i64..250_000_000_000_000,
        bound in -62_000_000_000_000i64..250_000_000_000_000,
    ) {
        let root = json!({"data": {"at": crate::time::rfc3339(at), "bound": crate::time::rfc3339(bound)}});
        let before = passes(&root, &[], "data.at", Operator::IsTimestampBefore, Some(json!("data.bound")), NOW);
        let after = passes(&root, &[], "data.at", Operator::IsTimestampOnOrAfter, Some(json!("data.bound")), NOW);
        prop_assert_ne!(before, after);
        prop_assert_eq!(before, at < bound);
    }

    #[test]
    fn relative_times_measure_from_now(
        amount in 1i64..10_000,
        unit in prop::sample::select(vec![("minutes", 60_000i64), ("hours", 3_600_000), ("days", 86_400_000), ("weeks", 604_800_000)]),
        ago in any::<bool>(),
        at in -1_000_000_000_000i64..4_000_000_000_000,
    ) {
        let (name, unit_ms) = unit;
        let text = if ago { format!("{amount} {name} ago") } else { format!("{amount} {name} from now") };
        let bound = if ago { NOW - amount * unit_ms } else { NOW + amount * unit_ms };
        let root = json!({"data": {"at": crate::time::rfc3339(at)}});
        let before = passes(&root, &[], "data.at", Operator::IsTimestampBefore, Some(json!(text)), NOW);
        prop_assert_eq!(before, at < bound);
    }

    #[test]
    fn any_of_one_all_is_that_all(
        conditions in prop::collection::vec(arb_condition(), 0..5),
        root in arb_root(),
        audiences in arb_audiences(),
    ) {
        let scope = JsonScope { root: &root, audiences: &audiences };
        let all = ConditionGroup::All(conditions.clone()).evaluate(&scope, NOW);
        let any = ConditionGroup::Any(vec![AnyItem::All(conditions)]).evaluate(&scope, NOW);
        prop_assert_eq!(all, any);
    }

    #[test]
    fn groups_follow_and_or_logic(
        conditions in prop::collection::vec(arb_condition(), 0..6),
        root in arb_root(),
    ) {
        let scope = JsonScope { root: &root, audiences: &[] };
        let each: Vec<bool> = conditions.iter().map(|c| c.evaluate(&scope, NOW).passed).collect();
        let all = ConditionGroup::All(conditions.clone()).evaluate(&scope, NOW);
        prop_assert_eq!(all.passed, each.iter().all(|p| *p));
        prop_assert_eq!(all.results.len(), conditions.len());
        let any = ConditionGroup::Any(conditions.iter().cloned().map(AnyItem::Condition).collect())
            .evaluate(&scope, NOW);
        prop_assert_eq!(any.passed, conditions.is_empty() || each.iter().any(|p| *p));
        prop_assert_eq!(any.results.len(), conditions.len());
    }

    #[test]
    fn empty_groups_pass(root in arb_root(), now in any::<i64>()) {
        let scope = JsonScope { root: &root, audiences: &[] };
        prop_assert!(ConditionGroup::All(Vec::new()).evaluate(&scope, now).passed);
        prop_assert!(ConditionGroup::Any(Vec::new()).evaluate(&scope, now).passed);
    }

    #[test]
    fn evaluation_never_panics(
        condition in arb_condition(),
        root in arb_json(),
        audiences in arb_audiences(),
        now in any::<i64>(),
    ) {
        let scope = JsonScope { root: &root, audiences: &audiences };
        let result = condition.evaluate(&scope, now);
        prop_assert!(serde_json::to_value(&result).is_ok());
    }

    #[test]
    fn parsing_and_evaluating_arbitrary_json_never_panics(
        value in arb_json(),
        items in prop::collection::vec((arb_json(), arb_text(), arb_json()), 0..4),
        use_any in any::<bool>(),
        root in arb_root(),
        now in any::<i64>(),
    ) {
        let _ = ConditionGroup::parse(&value, "conditions");
        let key = if use_any { "any" } else { "all" };
        let conditions: Vec<Value> = items
            .into_iter()
            .map(|(variable, operator, argument)| {
                json!({"variable": variable, "operator": operator, "argument": argument})
            })
            .collect();
        if let Ok(group) = ConditionGroup::parse(&json!({ key: conditions }), "conditions") {
            let scope = JsonScope { root: &root, audiences: &[] };
            let _ = group.evaluate(&scope, now);
        }
    }

    #[test]
    fn parsed_conditions_keep_what_was_written(
        variable in prop::sample::select(vec!["data.a", "recipient.plan", "refs.email_1.delivery_status", "data.items[0].name"]),
        operator in arb_operator(),
        argument in arb_text(),
    ) {
        let value = json!({"all": [{"variable": variable, "operator": operator.as_str(), "argument": argument}]});
        // Not every argument suits every operator; what parses must round-trip unchanged.
        if let Ok(ConditionGroup::All(conditions)) = ConditionGroup::parse(&value, "c") {
            prop_assert_eq!(conditions.len(), 1);
            prop_assert_eq!(&conditions[0].variable, variable);
            prop_assert_eq!(conditions[0].operator, operator);
            prop_assert_eq!(conditions[0].argument.clone(), Some(Value::String(argument)));
        }
    }

    #[test]
    fn resolve_path_finds_what_was_put_there(
        keys in prop::collection::vec("[a-z_][a-z0-9_]{0,6}", 1..4),
        index in 0usize..3,
        leaf in arb_json(),
    ) {
        let mut value = json!([null, null, null]);
        value[index] = leaf.clone();
        for key in keys.iter().rev() {
            value = json!({ key.as_str(): value });
        }
        let path = format!("{}[{index}]", keys.join("."));
        prop_assert_eq!(resolve_path(&value, &path), Some(leaf.clone()));
        let dotted = format!("{}.{index}", keys.join("."));
        prop_assert_eq!(resolve_path(&value, &dotted), Some(leaf));
    }

    #[test]
    fn parse_timestamp_reads_back_rfc3339(ms in -62_000_000_000_000i64..250_000_000_000_000) {
        prop_assert_eq!(parse_timestamp(&json!(crate::time::rfc3339(ms))), Some(ms));
    }
}
