use serde_json::{json, Value};

use super::*;
use crate::recipient::FieldError;
use crate::time::parse_rfc3339;

/// 2025-06-15T12:00:00Z, the evaluation time of every test.
fn now() -> Millis {
    ts("2025-06-15T12:00:00Z")
}

fn ts(text: &str) -> Millis {
    parse_rfc3339(text).expect("test timestamp")
}

fn root() -> Value {
    let mut data = json!({
            "plan": "pro",
            "empty": "",
            "nothing": null,
            "zero": 0,
            "count": 21,
            "count_text": "21",
            "float": 18.5,
            "big": 9_007_199_254_740_993_u64,
            "flag": true,
            "flag_text": "true",
            "zip": "02134",
            "threshold": 18,
            "threshold_text": "18",
            "role": "senior engineer",
            "order_ref": "order-123",
            "literal_path": "recipient.plan",
            "version": "v1.2",
            "tags": ["vip", "beta"],
            "beta_only": ["beta"],
            "ids": [1, 2, 3],
            "id_texts": ["1", "2"],
            "roles": ["admin", "editor", "viewer"],
            "admin_only": ["admin"],
            "admin_editor": ["admin", "editor"],
            "empty_list": [],
            "empty_object": {},
            "object": {"a": 1},
            "space": " ",
            "blank_item": [""],
            "wanted": "vip",
            "wanted_list": ["admin", "editor"],
            "items": [{"name": "first"}, {"name": "second"}]
    });
    let times = json!({
            "low": 10,
            "high": 30,
            "range": [10, 30],
            "created_at": "2025-06-15T00:00:00Z",
            "created_offset": "2025-06-15T02:00:00+02:00",
            "created_date": "2025-06-15",
            "created_local": "2025-06-15T10:00:00",
            "five_days_ahead": "2025-06-20T12:00:00Z",
            "ten_days_ahead": "2025-06-25T12:00:00Z",
            "ten_days_ago": "2025-06-05T12:00:00Z",
            "sixty_days_ago": "2025-04-16T12:00:00Z",
            "ends_at": "2025-07-01T00:00:00Z",
            "start": "2025-01-01",
            "end": "2025-12-31",
            "window": ["2025-01-01", "2025-12-31"],
            "unix": 1_750_000_000,
            "bad_date": "2025-13-01",
            "audience": "vip-users"
    });
    if let (Some(data), Some(times)) = (data.as_object_mut(), times.as_object()) {
        data.extend(times.clone());
    }
    json!({
        "data": data,
        "recipient": {"id": "u1", "plan": "pro", "email": "a@example.com", "tags": ["vip"]},
        "actor": {"id": "u2", "plan": "pro"},
        "run": {"total_activities": 6},
        "refs": {
            "email_1": {"delivery_status": "delivered", "engagement_status": []},
            "in_app": {"delivery_status": "read", "engagement_status": ["seen", "read"]},
            "seen_only": {"delivery_status": "seen", "engagement_status": ["seen"]},
            "skipped": {"delivery_status": "skipped"},
            "bounced": {"delivery_status": "bounced", "engagement_status": []},
            "queued": {"delivery_status": "queued", "engagement_status": []},
            "clicked": {
                "delivery_status": "link_clicked",
                "engagement_status": ["seen", "read", "link_clicked"]
            },
            "expired": {"delivery_status": null, "engagement_status": null}
        }
    })
}

fn audiences() -> Vec<String> {
    vec!["vip-users".to_owned(), "2024".to_owned()]
}

fn condition(variable: &str, operator: Operator, argument: Option<Value>) -> Condition {
    Condition {
        variable: variable.to_owned(),
        operator,
        argument,
    }
}

fn run(operator: Operator, variable: &str, argument: Option<Value>) -> ConditionResult {
    let root = root();
    let audiences = audiences();
    let scope = JsonScope {
        root: &root,
        audiences: &audiences,
    };
    condition(variable, operator, argument).evaluate(&scope, now())
}

/// A string argument, the way Knock's wire carries arguments.
fn s(text: &str) -> Option<Value> {
    Some(Value::String(text.to_owned()))
}

fn j(value: Value) -> Option<Value> {
    Some(value)
}

type Case = (&'static str, Option<Value>, bool, &'static str);

fn check(operator: Operator, cases: &[Case]) {
    let mut failures = Vec::new();
    for (variable, argument, expected, why) in cases {
        let result = run(operator, variable, argument.clone());
        if result.passed != *expected {
            failures.push(format!(
                "{} {variable} {argument:?}: expected {expected} ({why}), got {result:?}",
                operator.as_str()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same cases with every expectation flipped, for an operator Knock defines as the
/// negation of another.
fn negated(cases: &[Case]) -> Vec<Case> {
    cases
        .iter()
        .map(|(variable, argument, expected, why)| (*variable, argument.clone(), !expected, *why))
        .collect()
}

#[rustfmt::skip]
fn equal_to_cases() -> Vec<Case> {
    vec![
        ("data.plan", s("pro"), true, "documented match"),
        ("data.plan", s("free"), false, "documented non-match"),
        ("data.plan", s("Pro"), false, "text is case-sensitive"),
        ("data.missing", s("pro"), false, "missing variable"),
        ("data.missing", s(""), true, "missing compares as the empty string"),
        ("data.missing", s("null"), false, "missing is not null"),
        ("data.nothing", s("null"), true, "null equals null"),
        ("data.nothing", None, true, "no argument compares as null"),
        ("data.nothing", s(""), false, "null is not the empty string"),
        ("data.empty", s(""), true, "empty string"),
        ("data.count", s("21"), true, "number against decoded number"),
        ("data.count", s("21.0"), true, "numbers compare by value"),
        ("data.count", s("\"21\""), true, "number against numeric text"),
        ("data.count_text", s("21"), true, "numeric text against number"),
        ("data.count_text", s("\"21\""), true, "text against text"),
        ("data.count", s("22"), false, "different number"),
        ("data.zip", s("02134"), true, "leading zeros stay text"),
        ("data.zip", s("2134"), false, "a padded code is not a number"),
        ("data.flag", s("true"), true, "boolean against decoded boolean"),
        ("data.flag_text", s("true"), true, "boolean text against boolean"),
        ("data.flag", s("1"), false, "booleans are not numbers"),
        ("data.plan", j(json!(1)), false, "text against number"),
        ("data.tags", s("vip"), false, "list against text"),
        ("data.tags", s(r#"["vip","beta"]"#), true, "list equality"),
        ("data.tags", s(r#"["beta","vip"]"#), false, "list order matters"),
        ("data.object", j(json!({"a": 1.0})), true, "object equality"),
        ("recipient.plan", s("actor.plan"), true, "dynamic argument"),
        ("recipient.id", s("actor.id"), false, "dynamic argument differs"),
        ("recipient.plan", s("{{ actor.plan }}"), true, "liquid reference"),
        ("data.plan", s("data.missing"), false, "missing dynamic argument is \"\""),
        ("data.empty", s("data.missing"), true, "missing dynamic argument is \"\""),
        ("data.literal_path", s("\"recipient.plan\""), true, "quoted text is literal"),
        ("data.literal_path", s("recipient.plan"), false, "bare path is dynamic"),
        ("data.version", s("v1.2"), true, "text with a dot is literal"),
        ("data.items[1].name", s("second"), true, "indexed variable"),
        ("run.total_activities", s("6"), true, "run scope"),
    ]
}

#[test]
fn equal_to() {
    check(Operator::EqualTo, &equal_to_cases());
}

#[rustfmt::skip]
#[test]
fn not_equal_to() {
    check(Operator::NotEqualTo, &negated(&equal_to_cases()));
    check(
        Operator::NotEqualTo,
        &[
            ("data.plan", s("pro"), false, "documented"),
            ("recipient.plan", s("free"), true, "documented"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn greater_than() {
    check(
        Operator::GreaterThan,
        &[
            ("data.count", s("18"), true, "documented: 21 > 18"),
            ("data.threshold", s("18"), false, "documented: 18 > 18"),
            ("data.count_text", s("18"), true, "numeric text"),
            ("data.count", s("\"18\""), true, "against numeric text"),
            ("data.count", s("1e1"), true, "exponent notation"),
            ("data.float", s("18"), true, "float against int"),
            ("data.big", s("9007199254740992"), true, "large integers stay exact"),
            ("data.missing", s("18"), false, "missing is \"\", which has no order with numbers"),
            ("data.nothing", s("0"), false, "null has no order"),
            ("data.plan", s("5"), false, "text against number"),
            ("data.flag", s("false"), false, "booleans have no order"),
            ("data.tags", s("1"), false, "lists have no order"),
            ("data.plan", s("free"), true, "text compares lexicographically"),
            ("data.zip", s("1"), false, "a padded code is text, not a number"),
            ("data.count", s("data.threshold"), true, "dynamic argument"),
            ("data.threshold", s("data.count"), false, "dynamic argument"),
            ("data.count", s("data.threshold_text"), true, "dynamic numeric text"),
            ("data.count", s("data.missing"), false, "missing dynamic argument"),
            ("data.created_at", s("2025-06-14T23:00:00-02:00"), false, "timestamps compare as instants, not as text"),
            ("data.created_at", s("2025-06-14"), true, "timestamp against date"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn greater_than_or_equal_to() {
    check(
        Operator::GreaterThanOrEqualTo,
        &[
            ("data.threshold", s("18"), true, "documented: 18 >= 18"),
            ("data.count", s("22"), false, "documented shape: 21 >= 22"),
            ("data.threshold_text", s("18.0"), true, "numeric text by value"),
            ("data.missing", s("0"), false, "missing"),
            ("data.nothing", s("0"), false, "null"),
            ("data.flag", s("true"), false, "booleans have no order"),
            ("data.count", s("data.count_text"), true, "dynamic argument"),
            ("data.created_offset", s("data.created_at"), true, "same instant"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn less_than() {
    check(
        Operator::LessThan,
        &[
            ("data.threshold", s("50"), true, "documented shape: 18 < 50"),
            ("data.count", s("21"), false, "documented shape: 21 < 21"),
            ("data.count_text", s("100"), true, "numeric text, not lexicographic"),
            ("data.count", s("1e3"), true, "exponent notation"),
            ("data.missing", s("50"), false, "missing"),
            ("data.missing", s("b"), true, "missing is \"\", which sorts first"),
            ("data.nothing", s("50"), false, "null"),
            ("data.plan", s("50"), false, "text against number"),
            ("data.threshold", s("data.count"), true, "dynamic argument"),
            ("run.total_activities", s("5"), false, "documented run example"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn less_than_or_equal_to() {
    check(
        Operator::LessThanOrEqualTo,
        &[
            ("data.count", s("21"), true, "documented shape: 21 <= 21"),
            ("data.count", s("20"), false, "documented shape: 21 <= 20"),
            ("data.count_text", s("21"), true, "numeric text"),
            ("data.missing", s("21"), false, "missing"),
            ("data.nothing", s("21"), false, "null"),
            ("data.tags", s("21"), false, "list"),
            ("data.count", s("data.count_text"), true, "dynamic argument"),
        ],
    );
}

#[rustfmt::skip]
fn contains_cases() -> Vec<Case> {
    vec![
        ("data.role", s("engineer"), true, "documented: substring"),
        ("data.plan", s("engineer"), false, "documented: not a substring"),
        ("data.role", s("Engineer"), false, "substrings are case-sensitive"),
        ("data.tags", s("vip"), true, "documented: list item"),
        ("data.beta_only", s("vip"), false, "documented: not an item"),
        ("data.wanted", s(r#"["vip","beta"]"#), true, "text is an item of the argument list"),
        ("data.plan", s(r#"["vip","beta"]"#), false, "text is not an item"),
        ("data.tags", s(r#"["beta","x"]"#), true, "lists share an item"),
        ("data.tags", s(r#"["x","y"]"#), false, "lists share nothing"),
        ("data.tags", s("[]"), false, "an empty list shares nothing"),
        ("data.ids", s("2"), true, "number in a list of numbers"),
        ("data.id_texts", s("2"), true, "number in a list of numeric text"),
        ("data.ids", s("\"3\""), true, "numeric text in a list of numbers"),
        ("data.order_ref", s("123"), true, "a decoded number matches as text"),
        ("data.flag_text", s("true"), true, "a decoded boolean matches as text"),
        ("data.missing", s("x"), false, "missing variable"),
        ("data.missing", s(""), true, "missing is \"\", which contains \"\""),
        ("data.nothing", s("x"), false, "null contains nothing"),
        ("data.count", s("2"), false, "numbers are not text"),
        ("data.object", s("a"), false, "objects are not searched"),
        ("data.tags", None, false, "no argument"),
        ("recipient.tags", s("data.wanted"), true, "dynamic argument"),
        ("recipient.email", s("{{ data.missing }}"), true, "missing dynamic argument is \"\""),
        ("data.items", s(r#"{"name":"first"}"#), true, "objects as list items"),
    ]
}

#[test]
fn contains() {
    check(Operator::Contains, &contains_cases());
}

#[rustfmt::skip]
#[test]
fn not_contains() {
    check(Operator::NotContains, &negated(&contains_cases()));
    check(
        Operator::NotContains,
        &[
            ("data.plan", s("engineer"), true, "documented"),
            ("data.role", s("engineer"), false, "documented"),
            ("data.beta_only", s("vip"), true, "documented"),
            ("data.tags", s("vip"), false, "documented"),
        ],
    );
}

#[rustfmt::skip]
fn contains_all_cases() -> Vec<Case> {
    vec![
        ("data.roles", s(r#"["admin","editor"]"#), true, "documented"),
        ("data.admin_only", s(r#"["admin","editor"]"#), false, "documented"),
        ("data.roles", j(json!(["admin", "viewer"])), true, "JSON list argument"),
        ("data.roles", s("admin"), true, "a single value is a one-item list"),
        ("data.roles", s("owner"), false, "single value missing"),
        ("data.roles", s("[]"), true, "every item of an empty list is present"),
        ("data.ids", s(r#"["1","3"]"#), true, "numeric text matches numbers"),
        ("data.role", s(r#"["senior"]"#), false, "lists only: text never passes"),
        ("data.missing", s(r#"["admin"]"#), false, "missing variable"),
        ("data.nothing", s(r#"["admin"]"#), false, "null variable"),
        ("data.object", s(r#"["a"]"#), false, "object variable"),
        ("data.roles", s("data.wanted_list"), true, "dynamic argument"),
        ("data.admin_only", s("data.wanted_list"), false, "dynamic argument"),
        ("data.roles", s("data.missing"), false, "missing dynamic argument"),
    ]
}

#[test]
fn contains_all() {
    check(Operator::ContainsAll, &contains_all_cases());
}

#[rustfmt::skip]
#[test]
fn not_contains_all() {
    check(Operator::NotContainsAll, &negated(&contains_all_cases()));
    check(
        Operator::NotContainsAll,
        &[
            ("data.admin_only", s(r#"["admin","editor"]"#), true, "documented"),
            ("data.admin_editor", s(r#"["admin","editor"]"#), false, "documented"),
        ],
    );
}

#[rustfmt::skip]
fn empty_cases() -> Vec<Case> {
    vec![
        ("data.empty", None, true, "documented: \"\""),
        ("data.plan", None, false, "documented: text"),
        ("data.nothing", None, true, "null"),
        ("data.missing", None, true, "not set"),
        ("data.empty_list", None, true, "[]"),
        ("data.empty_object", None, true, "{}"),
        ("data.zero", None, false, "zero is a value"),
        ("data.flag", None, false, "a boolean is a value"),
        ("data.space", None, false, "whitespace is a value"),
        ("data.blank_item", None, false, "a list holding \"\""),
        ("data.object", None, false, "an object with properties"),
        ("data.empty", s("ignored"), true, "arguments are ignored"),
    ]
}

#[test]
fn empty() {
    check(Operator::Empty, &empty_cases());
}

#[test]
fn not_empty() {
    check(Operator::NotEmpty, &negated(&empty_cases()));
}

#[rustfmt::skip]
fn exists_cases() -> Vec<Case> {
    vec![
        ("data.plan", None, true, "documented: set"),
        ("data.empty", None, true, "documented: \"\" exists"),
        ("data.nothing", None, false, "documented: null"),
        ("data.missing", None, false, "not set"),
        ("data.empty_list", None, true, "[] exists"),
        ("data.zero", None, true, "zero exists"),
        ("data.missing.deeper", None, false, "below a missing property"),
        ("data.plan.deeper", None, false, "below a text value"),
        ("data.items[5]", None, false, "index out of range"),
        ("data.items[-1].name", None, true, "negative index"),
        ("refs.email_1.delivery_status", None, true, "message status path"),
    ]
}

#[test]
fn exists() {
    check(Operator::Exists, &exists_cases());
}

#[test]
fn not_exists() {
    check(Operator::NotExists, &negated(&exists_cases()));
}

#[rustfmt::skip]
fn is_timestamp_cases() -> Vec<Case> {
    vec![
        ("data.created_at", None, true, "RFC 3339 UTC"),
        ("data.created_offset", None, true, "RFC 3339 with offset"),
        ("data.created_date", None, true, "bare date"),
        ("data.created_local", None, true, "date-time without offset"),
        ("data.unix", None, false, "numbers are not timestamps"),
        ("data.plan", None, false, "text"),
        ("data.bad_date", None, false, "impossible date"),
        ("data.missing", None, false, "missing"),
        ("data.nothing", None, false, "null"),
    ]
}

#[test]
fn is_timestamp() {
    check(Operator::IsTimestamp, &is_timestamp_cases());
}

#[test]
fn is_not_timestamp() {
    check(Operator::IsNotTimestamp, &negated(&is_timestamp_cases()));
}

#[rustfmt::skip]
#[test]
fn is_timestamp_before() {
    check(
        Operator::IsTimestampBefore,
        &[
            ("data.five_days_ahead", s("7 days from now"), true, "documented"),
            ("data.ten_days_ahead", s("7 days from now"), false, "documented"),
            ("data.ten_days_ago", s("1 week ago"), true, "weeks"),
            ("data.ten_days_ago", s("2 Weeks Ago"), false, "any letter case"),
            ("data.created_at", s("11 hours ago"), true, "hours"),
            ("data.created_at", s("13 hours ago"), false, "hours"),
            ("data.created_at", s("719 minutes ago"), true, "minutes"),
            ("data.created_at", s("721 minutes ago"), false, "minutes"),
            ("data.created_at", s("2025-06-16"), true, "absolute date"),
            ("data.created_at", s("2025-06-15T00:00:00Z"), false, "same instant"),
            ("data.created_offset", s("2025-06-15T00:00:00.001Z"), true, "offsets honoured"),
            ("data.created_at", s("data.ends_at"), true, "dynamic argument"),
            ("data.created_at", s("{{ data.ends_at }}"), true, "liquid reference"),
            ("data.created_at", s("data.missing"), false, "missing dynamic argument"),
            ("data.created_at", s("data.plan"), false, "dynamic argument is no timestamp"),
            ("data.missing", s("7 days from now"), false, "missing variable"),
            ("data.nothing", s("7 days from now"), false, "null variable"),
            ("data.plan", s("7 days from now"), false, "variable is no timestamp"),
            ("data.unix", s("7 days from now"), false, "numbers are not timestamps"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn is_timestamp_on_or_after() {
    check(
        Operator::IsTimestampOnOrAfter,
        &[
            ("data.ten_days_ago", s("30 days ago"), true, "documented"),
            ("data.sixty_days_ago", s("30 days ago"), false, "documented"),
            ("data.created_at", s("2025-06-15T00:00:00Z"), true, "same instant"),
            ("data.created_offset", s("data.created_at"), true, "same instant, other offset"),
            ("data.created_date", s("data.created_at"), true, "a bare date is midnight UTC"),
            ("data.created_local", s("2025-06-15T10:00:00Z"), true, "no offset reads as UTC"),
            ("data.created_at", s("data.ends_at"), false, "dynamic argument"),
            ("data.missing", s("30 days ago"), false, "missing variable"),
            ("data.nothing", s("30 days ago"), false, "null variable"),
            ("data.plan", s("30 days ago"), false, "variable is no timestamp"),
        ],
    );
}

#[test]
fn relative_times_are_exact_durations() {
    let root = json!({"data": {
        "just_before": crate::time::rfc3339(now() + 86_400_000 - 1),
        "exactly": crate::time::rfc3339(now() + 86_400_000),
    }});
    let scope = JsonScope {
        root: &root,
        audiences: &[],
    };
    let before = |variable: &str| {
        condition(variable, Operator::IsTimestampBefore, s("1 day from now"))
            .evaluate(&scope, now())
            .passed
    };
    assert!(before("data.just_before"));
    assert!(!before("data.exactly"));

    let result = condition(
        "data.exactly",
        Operator::IsTimestampBefore,
        s("1 day from now"),
    )
    .evaluate(&scope, now());
    assert_eq!(
        result.resolved_argument,
        Some(json!("2025-06-16T12:00:00.000000Z"))
    );
}

#[rustfmt::skip]
#[test]
fn is_timestamp_before_date() {
    check(
        Operator::IsTimestampBeforeDate,
        &[
            ("data.created_at", s("2025-06-16"), true, "earlier day"),
            ("data.created_at", s("2025-06-15T23:00:00Z"), false, "same day, earlier instant"),
            ("data.created_at", s("2025-06-15"), false, "same day"),
            ("data.ten_days_ago", s("1 day ago"), true, "relative bound, by day"),
            ("data.created_at", s("data.ends_at"), true, "dynamic argument"),
            ("data.missing", s("2025-06-16"), false, "missing"),
            ("data.nothing", s("2025-06-16"), false, "null"),
            ("data.plan", s("2025-06-16"), false, "no timestamp"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn is_timestamp_on_or_after_date() {
    check(
        Operator::IsTimestampOnOrAfterDate,
        &[
            ("data.created_at", s("2025-06-15T23:00:00Z"), true, "same day, later instant"),
            ("data.created_at", s("2025-06-14"), true, "later day"),
            ("data.created_at", s("2025-06-16"), false, "earlier day"),
            ("data.created_at", s("data.ends_at"), false, "dynamic argument"),
            ("data.missing", s("2025-06-14"), false, "missing"),
            ("data.nothing", s("2025-06-14"), false, "null"),
            ("data.plan", s("2025-06-14"), false, "no timestamp"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn is_timestamp_between() {
    let year = || s(r#"["2025-01-01", "2025-12-31"]"#);
    let root = json!({"data": {
        "mid": "2025-06-15",
        "before": "2024-12-31",
        "first": "2025-01-01T00:00:00Z",
        "last_afternoon": "2025-12-31T18:00:00Z",
        "after": "2026-01-01T00:00:00Z",
        "start": "2025-01-01",
        "end": "2025-12-31",
        "window": ["2025-01-01", "2025-12-31"],
        "plan": "pro",
        "nothing": null
    }});
    let scope = JsonScope {
        root: &root,
        audiences: &[],
    };
    let cases: Vec<Case> = vec![
        ("data.mid", year(), true, "documented"),
        ("data.before", year(), false, "documented"),
        ("data.first", year(), true, "the start is inclusive"),
        ("data.last_afternoon", year(), true, "a bare end date covers its day"),
        ("data.after", year(), false, "after the end day"),
        ("data.last_afternoon", s(r#"["2025-01-01T00:00:00Z", "2025-12-31T18:00:00Z"]"#), true, "a date-time end is inclusive"),
        ("data.last_afternoon", s(r#"["2025-01-01T00:00:00Z", "2025-12-31T17:59:59Z"]"#), false, "a date-time end is exact"),
        ("data.mid", j(json!(["2025-01-01", "2025-12-31"])), true, "JSON list"),
        ("data.mid", j(json!(["data.start", "data.end"])), true, "dynamic ends"),
        ("data.mid", j(json!(["data.start", "{{ data.missing }}"])), false, "missing end"),
        ("data.mid", s("data.window"), true, "dynamic list"),
        ("data.mid", s("data.plan"), false, "dynamic argument is no list"),
        ("data.missing", year(), false, "missing variable"),
        ("data.nothing", year(), false, "null variable"),
        ("data.plan", year(), false, "variable is no timestamp"),
        ("data.mid", j(json!(["2025-12-31", "2025-01-01"])), false, "reversed range"),
    ];
    for (variable, argument, expected, why) in cases {
        let result =
            condition(variable, Operator::IsTimestampBetween, argument).evaluate(&scope, now());
        assert_eq!(result.passed, expected, "{variable}: {why}");
    }
}

#[rustfmt::skip]
#[test]
fn is_between() {
    check(
        Operator::IsBetween,
        &[
            ("data.count", s("[10, 30]"), true, "inside"),
            ("data.count", s("[21, 30]"), true, "low end inclusive"),
            ("data.count", s("[10, 21]"), true, "high end inclusive"),
            ("data.count", s("[22, 30]"), false, "below"),
            ("data.count", s("[1, 20.5]"), false, "above"),
            ("data.count", j(json!(["10", "30"])), true, "numeric text ends"),
            ("data.count_text", j(json!([10, 30])), true, "numeric text variable"),
            ("data.count", j(json!(["data.low", "data.high"])), true, "dynamic ends"),
            ("data.count", s("data.range"), true, "dynamic list"),
            ("data.count", j(json!([30, 10])), false, "reversed range"),
            ("data.count", j(json!([10])), false, "one end only"),
            ("data.missing", s("[10, 30]"), false, "missing variable"),
            ("data.nothing", s("[10, 30]"), false, "null variable"),
            ("data.plan", s("[10, 30]"), false, "text variable"),
            ("data.zip", s("[2000, 3000]"), false, "padded codes are text"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn is_audience_member() {
    let cases: Vec<Case> = vec![
        ("recipient", s("vip-users"), true, "member"),
        ("recipient", s("other"), false, "not a member"),
        ("recipient.id", s("2024"), true, "keys are used as written, not decoded"),
        ("recipient", s("data.audience"), true, "dynamic key"),
        ("recipient", s("data.missing"), false, "missing dynamic key"),
        ("", s("vip-users"), true, "the variable is not used"),
        ("recipient", None, false, "no key"),
    ];
    check(Operator::IsAudienceMember, &cases);
    check(Operator::IsNotAudienceMember, &negated(&cases));

    let result = run(Operator::IsAudienceMember, "recipient", s("vip-users"));
    assert_eq!(result.resolved_variable, json!(true));
    assert_eq!(result.resolved_argument, Some(json!("vip-users")));
}

#[test]
fn unknown_audience_membership_is_not_membership() {
    struct Unknown;
    impl ConditionScope for Unknown {
        fn resolve(&self, _: &str) -> Option<Value> {
            None
        }
        fn is_audience_member(&self, _: &str) -> Option<bool> {
            None
        }
    }
    let member = condition("recipient", Operator::IsAudienceMember, s("vip-users"));
    let result = member.evaluate(&Unknown, now());
    assert!(!result.passed);
    assert_eq!(result.resolved_variable, Value::Null);
    let not_member = condition("recipient", Operator::IsNotAudienceMember, s("vip-users"));
    assert!(not_member.evaluate(&Unknown, now()).passed);
}

#[rustfmt::skip]
#[test]
fn is_timestamp_before_now() {
    check(
        Operator::IsTimestampBeforeNow,
        &[
            ("data.ten_days_ago", None, true, "documented: past"),
            ("data.ten_days_ahead", None, false, "documented: future"),
            ("data.missing", None, false, "missing"),
            ("data.nothing", None, false, "null"),
            ("data.plan", None, false, "no timestamp"),
        ],
    );
    let at_now = json!({"data": {"t": "2025-06-15T12:00:00Z"}});
    let scope = JsonScope {
        root: &at_now,
        audiences: &[],
    };
    assert!(
        !condition("data.t", Operator::IsTimestampBeforeNow, None)
            .evaluate(&scope, now())
            .passed
    );
    assert!(
        condition("data.t", Operator::IsTimestampOnOrAfterNow, None)
            .evaluate(&scope, now())
            .passed
    );
}

#[rustfmt::skip]
#[test]
fn is_timestamp_on_or_after_now() {
    check(
        Operator::IsTimestampOnOrAfterNow,
        &[
            ("data.ten_days_ahead", None, true, "documented: future"),
            ("data.ten_days_ago", None, false, "documented: past"),
            ("data.missing", None, false, "missing"),
            ("data.nothing", None, false, "null"),
            ("data.plan", None, false, "no timestamp"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn message_delivery_status() {
    check(
        Operator::GreaterThanOrEqualTo,
        &[
            ("refs.email_1.delivery_status", s("$message.sent"), true, "delivered has been sent"),
            ("refs.email_1.delivery_status", s("$message.delivered"), true, "has been delivered"),
            ("refs.queued.delivery_status", s("$message.sent"), false, "queued is not sent"),
            ("refs.bounced.delivery_status", s("$message.sent"), false, "bounced is not sent"),
            ("refs.in_app.delivery_status", s("$message.delivered"), true, "read ranks above delivered"),
            ("refs.clicked.delivery_status", s("$message.interacted"), true, "clicked ranks with interacted"),
            ("refs.missing.delivery_status", s("$message.sent"), false, "no message"),
            ("refs.expired.delivery_status", s("$message.sent"), false, "expired message"),
        ],
    );
    check(
        Operator::LessThan,
        &[
            ("refs.email_1.delivery_status", s("$message.sent"), false, "has not been sent"),
            ("refs.queued.delivery_status", s("$message.sent"), true, "has not been sent"),
            ("refs.skipped.delivery_status", s("$message.sent"), true, "a skipped step sent nothing"),
            ("refs.missing.delivery_status", s("$message.sent"), false, "no message: always false"),
        ],
    );
    check(
        Operator::GreaterThan,
        &[(
            "refs.clicked.delivery_status",
            s("$message.interacted"),
            false,
            "same rank",
        )],
    );
    check(
        Operator::LessThanOrEqualTo,
        &[(
            "refs.clicked.delivery_status",
            s("$message.interacted"),
            true,
            "same rank",
        )],
    );
    check(
        Operator::EqualTo,
        &[
            ("refs.skipped.delivery_status", s("$message.skipped"), true, "has been skipped"),
            ("refs.email_1.delivery_status", s("$message.skipped"), false, "was not skipped"),
            ("refs.bounced.delivery_status", s("$message.bounced"), true, "has bounced"),
            ("refs.email_1.delivery_status", s("$message.undelivered"), false, "did not fail"),
            ("refs.missing.delivery_status", s("$message.skipped"), false, "no message"),
        ],
    );
    check(
        Operator::NotEqualTo,
        &[
            ("refs.email_1.delivery_status", s("$message.skipped"), true, "has not been skipped"),
            ("refs.skipped.delivery_status", s("$message.skipped"), false, "was skipped"),
            ("refs.missing.delivery_status", s("$message.skipped"), false, "no message: always false"),
        ],
    );
}

#[rustfmt::skip]
#[test]
fn message_engagement_status() {
    check(
        Operator::Contains,
        &[
            ("refs.in_app.engagement_status", s("$message.seen"), true, "has been seen"),
            ("refs.in_app.engagement_status", s("$message.read"), true, "has been read"),
            ("refs.email_1.engagement_status", s("$message.seen"), false, "not seen"),
            ("refs.seen_only.engagement_status", s("$message.seen_not_read"), true, "seen, not read"),
            ("refs.in_app.engagement_status", s("$message.seen_not_read"), false, "already read"),
            ("refs.in_app.engagement_status", s("$message.read_not_link_clicked"), true, "read, no click"),
            ("refs.clicked.engagement_status", s("$message.read_not_link_clicked"), false, "clicked"),
            ("refs.clicked.engagement_status", s("$message.link_clicked"), true, "link clicked"),
            ("refs.clicked.engagement_status", s("$message.archived"), false, "not archived"),
            ("refs.missing.engagement_status", s("$message.seen"), false, "no message"),
        ],
    );
    check(
        Operator::NotContains,
        &[
            ("refs.email_1.engagement_status", s("$message.seen"), true, "has not been seen"),
            ("refs.in_app.engagement_status", s("$message.seen"), false, "was seen"),
            ("refs.clicked.engagement_status", s("$message.interacted"), true, "not interacted"),
            ("refs.missing.engagement_status", s("$message.seen"), false, "no message: always false"),
            ("refs.expired.engagement_status", s("$message.seen"), false, "expired: always false"),
        ],
    );
}

#[test]
fn results_record_resolved_inputs() {
    let result = run(
        Operator::GreaterThan,
        "data.count",
        s("data.threshold_text"),
    );
    assert_eq!(result.resolved_variable, json!(21));
    assert_eq!(result.resolved_argument, Some(json!("18")));
    assert_eq!(result.operator, "greater_than");
    assert_eq!(result.argument, s("data.threshold_text"));

    let decoded = run(Operator::EqualTo, "data.count", s("21"));
    assert_eq!(decoded.resolved_argument, Some(json!(21)));

    let missing = run(Operator::EqualTo, "data.missing", s("data.also_missing"));
    assert_eq!(missing.resolved_variable, Value::Null);
    assert_eq!(missing.resolved_argument, Some(Value::Null));

    let no_argument = run(Operator::Exists, "data.plan", s("ignored"));
    assert_eq!(no_argument.resolved_argument, None);

    let between = run(
        Operator::IsBetween,
        "data.count",
        j(json!(["data.low", 30])),
    );
    assert_eq!(between.resolved_argument, Some(json!([10, 30])));

    let relative = run(
        Operator::IsTimestampOnOrAfter,
        "data.created_at",
        s("7 days ago"),
    );
    assert_eq!(
        relative.resolved_argument,
        Some(json!("2025-06-08T12:00:00.000000Z"))
    );

    let status = run(
        Operator::Contains,
        "refs.in_app.engagement_status",
        s("$message.seen"),
    );
    assert_eq!(status.resolved_variable, json!(["seen", "read"]));
    assert_eq!(status.resolved_argument, s("$message.seen"));
}

fn group(value: Value) -> ConditionGroup {
    ConditionGroup::parse(&value, "conditions").expect("group parses")
}

fn evaluate(group: &ConditionGroup) -> Evaluation {
    let root = root();
    let audiences = audiences();
    let scope = JsonScope {
        root: &root,
        audiences: &audiences,
    };
    group.evaluate(&scope, now())
}

const PRO: &str = r#"{"variable": "recipient.plan", "operator": "equal_to", "argument": "pro"}"#;
const FREE: &str = r#"{"variable": "recipient.plan", "operator": "equal_to", "argument": "free"}"#;

fn cond(text: &str) -> Value {
    serde_json::from_str(text).expect("test JSON")
}

#[test]
fn all_groups_need_every_condition_and_record_each() {
    let evaluation = evaluate(&group(json!({"all": [cond(FREE), cond(PRO), cond(PRO)]})));
    assert!(!evaluation.passed);
    assert_eq!(
        evaluation
            .results
            .iter()
            .map(|r| r.passed)
            .collect::<Vec<_>>(),
        [false, true, true],
        "every condition is evaluated even after the outcome is known"
    );
    assert!(evaluate(&group(json!({"all": [cond(PRO), cond(PRO)]}))).passed);
}

#[test]
fn any_groups_need_one_entry_and_record_each() {
    let evaluation = evaluate(&group(json!({"any": [cond(PRO), cond(FREE)]})));
    assert!(evaluation.passed);
    assert_eq!(evaluation.results.len(), 2);
    assert!(!evaluate(&group(json!({"any": [cond(FREE), cond(FREE)]}))).passed);

    let nested = group(json!({"any": [
        {"all": [cond(PRO), cond(FREE)]},
        {"all": [cond(FREE)]},
        cond(FREE)
    ]}));
    let evaluation = evaluate(&nested);
    assert!(!evaluation.passed, "no entry passes as a whole");
    assert_eq!(evaluation.results.len(), 4);

    let nested = group(json!({"any": [cond(FREE), {"all": [cond(PRO), cond(PRO)]}]}));
    assert!(evaluate(&nested).passed);
}

#[test]
fn empty_groups_pass() {
    for value in [
        json!({"all": []}),
        json!({"any": []}),
        json!({"any": [{"all": []}]}),
    ] {
        let evaluation = evaluate(&group(value.clone()));
        assert!(evaluation.passed, "{value}");
        assert!(evaluation.results.is_empty());
    }
}

#[test]
fn documented_group_examples() {
    let root = json!({
        "recipient": {"is_active": true},
        "actor": {"is_active": false},
        "data": {"force_delivery": "true"}
    });
    let scope = JsonScope {
        root: &root,
        audiences: &[],
    };
    let active =
        |variable: &str| json!({"argument": "true", "operator": "equal_to", "variable": variable});
    let and = group(json!({"all": [active("recipient.is_active"), active("actor.is_active")]}));
    assert!(!and.evaluate(&scope, now()).passed);
    let or = group(json!({"any": [active("recipient.is_active"), active("actor.is_active")]}));
    assert!(or.evaluate(&scope, now()).passed);
    let mixed = group(json!({"any": [
        {"all": [active("recipient.is_active"), active("actor.is_active")]},
        {"all": [active("data.force_delivery")]}
    ]}));
    assert!(mixed.evaluate(&scope, now()).passed);
}

#[test]
fn evaluation_serializes_for_the_run_log() {
    let evaluation = evaluate(&group(json!({"all": [
        {"variable": "data.count", "operator": "greater_than", "argument": "data.threshold"},
        {"variable": "data.missing", "operator": "exists"}
    ]})));
    assert_eq!(
        serde_json::to_value(&evaluation).expect("serializes"),
        json!({
            "passed": false,
            "results": [
                {
                    "variable": "data.count",
                    "operator": "greater_than",
                    "argument": "data.threshold",
                    "resolved_variable": 21,
                    "resolved_argument": 18,
                    "passed": true
                },
                {
                    "variable": "data.missing",
                    "operator": "exists",
                    "argument": null,
                    "resolved_variable": null,
                    "resolved_argument": null,
                    "passed": false
                }
            ]
        })
    );
}

#[test]
fn parses_groups() {
    assert_eq!(
        group(json!({"all": [cond(PRO)]})),
        ConditionGroup::All(vec![condition(
            "recipient.plan",
            Operator::EqualTo,
            s("pro")
        )])
    );
    assert_eq!(
        group(json!({"any": [cond(PRO), {"all": [cond(FREE)]}]})),
        ConditionGroup::Any(vec![
            AnyItem::Condition(condition("recipient.plan", Operator::EqualTo, s("pro"))),
            AnyItem::All(vec![condition(
                "recipient.plan",
                Operator::EqualTo,
                s("free")
            )]),
        ])
    );
    // A null sibling key is the same as an absent one.
    assert!(matches!(
        group(json!({"all": [], "any": null})),
        ConditionGroup::All(_)
    ));
}

#[test]
fn parses_every_documented_variable_form() {
    for variable in [
        "data.order.total",
        "data.items[0].name",
        "data.items.0.name",
        "recipient.email",
        "actor.id",
        "tenant.name",
        "vars.api_url",
        "workflow.categories",
        "run.total_activities",
        "refs.email_1.delivery_status",
        "refs.in-app-feed_1.engagement_status",
        "event.data.amount",
    ] {
        let value = json!({"all": [{"variable": variable, "operator": "exists"}]});
        assert!(
            ConditionGroup::parse(&value, "conditions").is_ok(),
            "{variable}"
        );
    }
}

#[rustfmt::skip]
#[test]
fn parses_documented_arguments() {
    for (operator, argument) in [
        ("greater_than", json!("5")),
        ("equal_to", json!("true")),
        ("equal_to", json!(null)),
        ("equal_to", json!(5)),
        ("not_contains", json!("data.dino")),
        ("not_equal_to", json!("actor.id")),
        ("contains_all", json!(["admin", "editor"])),
        ("is_timestamp_before", json!("7 days from now")),
        ("is_timestamp_on_or_after", json!("15 minutes ago")),
        ("is_timestamp_before", json!("2025-06-15T14:30:00Z")),
        ("is_timestamp_before", json!("{{ recipient.subscription_ends_at }}")),
        ("is_timestamp_before", json!("data.ends_at")),
        ("is_timestamp_between", json!(["2025-01-01", "2025-12-31"])),
        ("is_timestamp_between", json!(r#"["2025-01-01", "2025-12-31"]"#)),
        ("is_timestamp_between", json!(["data.start", "{{ data.end }}"])),
        ("is_timestamp_between", json!(["2025-12-31T10:00:00Z", "2025-12-31"])),
        ("is_timestamp_between", json!("data.window")),
        ("is_between", json!([1, "10"])),
        ("is_between", json!("[1, 10]")),
        ("is_between", json!(["data.low", 10])),
        ("is_audience_member", json!("vip-users")),
        ("greater_than_or_equal_to", json!("$message.sent")),
        ("contains", json!("$message.seen_not_read")),
        ("empty", json!("")),
        ("exists", json!(null)),
    ] {
        let value =
            json!({"all": [{"variable": "data.x", "operator": operator, "argument": argument}]});
        let parsed = ConditionGroup::parse(&value, "conditions");
        assert!(parsed.is_ok(), "{operator} {argument}: {parsed:?}");
    }
}

fn parse_error(value: Value) -> FieldError {
    match ConditionGroup::parse(&value, "conditions") {
        Ok(group) => panic!("expected an error, got {group:?}"),
        Err(error) => error,
    }
}

#[rustfmt::skip]
#[test]
fn parse_errors_name_the_field() {
    let ok = cond(PRO);
    let cases = [
        (json!([]), "conditions"),
        (json!({}), "conditions"),
        (json!({"all": [], "any": []}), "conditions"),
        (json!({"all": {}}), "conditions.all"),
        (json!({"any": "x"}), "conditions.any"),
        (json!({"all": [ok, 5]}), "conditions.all[1]"),
        (json!({"all": [ok, ok, {"variable": "data.x"}]}), "conditions.all[2].operator"),
        (json!({"all": [{"variable": "data.x", "operator": "like"}]}), "conditions.all[0].operator"),
        (json!({"all": [{"variable": "data.x", "operator": 3}]}), "conditions.all[0].operator"),
        (json!({"all": [{"operator": "exists"}]}), "conditions.all[0].variable"),
        (json!({"all": [{"variable": 7, "operator": "exists"}]}), "conditions.all[0].variable"),
        (json!({"all": [{"variable": "data..x", "operator": "exists"}]}), "conditions.all[0].variable"),
        (json!({"all": [{"variable": "data.items[x]", "operator": "exists"}]}), "conditions.all[0].variable"),
        (json!({"all": [{"variable": "", "operator": "exists"}]}), "conditions.all[0].variable"),
        (json!({"all": [{"all": []}]}), "conditions.all[0]"),
        (json!({"any": [ok, {"any": []}]}), "conditions.any[1]"),
        (json!({"any": [ok, {"all": "x"}]}), "conditions.any[1].all"),
        (json!({"any": [ok, {"all": [ok, {"variable": "data.x", "operator": "greater_than"}]}]}), "conditions.any[1].all[1].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "contains_all", "argument": null}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_before", "argument": "10 minutes ago"}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_before", "argument": "0 days from now"}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_before", "argument": "next tuesday"}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_on_or_after", "argument": 1_750_000_000}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_between", "argument": ["7 days ago", "2025-12-31"]}]}), "conditions.all[0].argument[0]"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_between", "argument": ["2025-01-01", "soon"]}]}), "conditions.all[0].argument[1]"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_between", "argument": "2025-01-01"}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_timestamp_between", "argument": ["2025-12-31", "2025-01-01"]}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_between", "argument": [1, 2, 3]}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "data.x", "operator": "is_between", "argument": [1, "ten"]}]}), "conditions.all[0].argument[1]"),
        (json!({"all": [{"variable": "data.x", "operator": "is_between", "argument": "[10, 1]"}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "recipient", "operator": "is_audience_member", "argument": " "}]}), "conditions.all[0].argument"),
        (json!({"all": [{"variable": "refs.a.delivery_status", "operator": "equal_to", "argument": "$message.opened"}]}), "conditions.all[0].argument"),
    ];
    for (value, field) in cases {
        let error = parse_error(value.clone());
        assert_eq!(error.field, field, "{value}: {}", error.message);
        assert!(!error.message.is_empty());
    }
}

#[test]
fn parse_error_without_a_field_prefix() {
    let value = json!({"all": [{"variable": "data.x"}]});
    let error = ConditionGroup::parse(&value, "").expect_err("operator is missing");
    assert_eq!(error.field, "all[0].operator");
}

#[test]
fn operator_names_round_trip() {
    let wire = [
        "equal_to",
        "not_equal_to",
        "greater_than",
        "less_than",
        "greater_than_or_equal_to",
        "less_than_or_equal_to",
        "contains",
        "not_contains",
        "empty",
        "not_empty",
        "exists",
        "not_exists",
        "contains_all",
        "not_contains_all",
        "is_timestamp",
        "is_not_timestamp",
        "is_timestamp_on_or_after",
        "is_timestamp_before",
        "is_timestamp_on_or_after_date",
        "is_timestamp_before_date",
        "is_timestamp_between",
        "is_between",
        "is_audience_member",
        "is_not_audience_member",
        "is_timestamp_before_now",
        "is_timestamp_on_or_after_now",
    ];
    assert_eq!(wire.len(), Operator::ALL.len());
    for (name, operator) in wire.iter().zip(Operator::ALL) {
        assert_eq!(Operator::parse(name), Some(operator));
        assert_eq!(operator.as_str(), *name);
    }
    assert_eq!(Operator::parse("Equal_To"), None);
    assert_eq!(Operator::parse(""), None);
}

#[test]
fn resolves_paths() {
    let root = root();
    assert_eq!(resolve_path(&root, "data.plan"), Some(json!("pro")));
    assert_eq!(resolve_path(&root, "data.nothing"), Some(Value::Null));
    assert_eq!(
        resolve_path(&root, "data.items[0].name"),
        Some(json!("first"))
    );
    assert_eq!(
        resolve_path(&root, "data.items.1.name"),
        Some(json!("second"))
    );
    assert_eq!(
        resolve_path(&root, "data.items[-1].name"),
        Some(json!("second"))
    );
    assert_eq!(resolve_path(&root, "data.items[-3]"), None);
    assert_eq!(resolve_path(&root, "data.items[2]"), None);
    assert_eq!(resolve_path(&root, "data.range[1]"), Some(json!(30)));
    assert_eq!(resolve_path(&root, "data"), root.get("data").cloned());
    assert_eq!(resolve_path(&root, "data.object[0]"), None);
    assert_eq!(resolve_path(&root, "data.plan.length"), None);
    assert_eq!(resolve_path(&root, "data.missing"), None);
    for malformed in [
        "",
        ".",
        "data.",
        ".data",
        "data..plan",
        "data.items[",
        "data.items[]",
        "data.items[x]",
        "data.items]",
        "data. plan",
        "data.items[0]x",
    ] {
        assert_eq!(resolve_path(&root, malformed), None, "{malformed:?}");
    }
    assert_eq!(resolve_path(&json!([1, 2]), "0"), Some(json!(1)));
}

#[test]
fn parses_timestamps() {
    let at = ts("2025-06-15T14:30:00Z");
    assert_eq!(parse_timestamp(&json!("2025-06-15T14:30:00Z")), Some(at));
    assert_eq!(
        parse_timestamp(&json!("2025-06-15T16:30:00+02:00")),
        Some(at)
    );
    assert_eq!(parse_timestamp(&json!("2025-06-15 14:30:00Z")), Some(at));
    assert_eq!(parse_timestamp(&json!("2025-06-15T14:30:00")), Some(at));
    assert_eq!(
        parse_timestamp(&json!("2025-06-15T14:30:00.250Z")),
        Some(at + 250)
    );
    assert_eq!(
        parse_timestamp(&json!("2025-06-15")),
        Some(ts("2025-06-15T00:00:00Z"))
    );
    assert_eq!(parse_timestamp(&json!("1969-12-31T23:59:59Z")), Some(-1000));
    for not_a_timestamp in [
        json!(1_750_000_000),
        json!(1_750_000_000_000_i64),
        json!("1750000000"),
        json!("2025-02-30"),
        json!("June 15, 2025"),
        json!("7 days ago"),
        json!(""),
        json!(null),
        json!(true),
        json!(["2025-06-15"]),
    ] {
        assert_eq!(parse_timestamp(&not_a_timestamp), None, "{not_a_timestamp}");
    }
}

#[test]
fn relative_time_syntax() {
    use super::timestamps::parse_relative;
    let minute = 60_000;
    assert_eq!(parse_relative("7 days ago"), Some(-7 * 1440 * minute));
    assert_eq!(parse_relative("3 days from now"), Some(3 * 1440 * minute));
    assert_eq!(parse_relative("1 week ago"), Some(-7 * 1440 * minute));
    assert_eq!(
        parse_relative("  2   HOURS   From  Now "),
        Some(120 * minute)
    );
    assert_eq!(parse_relative("15 minutes ago"), Some(-15 * minute));
    assert_eq!(parse_relative("1 minute from now"), Some(minute));
    for invalid in [
        "in 2 hours",
        "7 days",
        "days ago",
        "-7 days ago",
        "7.5 days ago",
        "7 months ago",
        "7 days from today",
        "99999999999999999999 days ago",
        "9999999999999999 weeks ago",
        "",
    ] {
        assert_eq!(parse_relative(invalid), None, "{invalid:?}");
    }
}

#[test]
fn static_and_dynamic_arguments() {
    use super::argument::{classify_text, Argument};
    assert_eq!(
        classify_text("data.threshold"),
        Argument::Dynamic("data.threshold")
    );
    assert_eq!(
        classify_text("recipient.plan"),
        Argument::Dynamic("recipient.plan")
    );
    assert_eq!(
        classify_text("refs.email_1.delivery_status"),
        Argument::Dynamic("refs.email_1.delivery_status")
    );
    assert_eq!(
        classify_text("{{ tenant.name }}"),
        Argument::Dynamic("tenant.name")
    );
    assert_eq!(
        classify_text("{{anything.goes}}"),
        Argument::Dynamic("anything.goes")
    );
    assert_eq!(classify_text("5"), Argument::Literal(json!(5)));
    assert_eq!(classify_text("1.5"), Argument::Literal(json!(1.5)));
    assert_eq!(classify_text("true"), Argument::Literal(json!(true)));
    assert_eq!(classify_text("null"), Argument::Literal(json!(null)));
    assert_eq!(
        classify_text(r#"["a", 1]"#),
        Argument::Literal(json!(["a", 1]))
    );
    assert_eq!(
        classify_text(r#""data.x""#),
        Argument::Literal(json!("data.x"))
    );
    assert_eq!(classify_text("pro"), Argument::Literal(json!("pro")));
    assert_eq!(classify_text("v1.2"), Argument::Literal(json!("v1.2")));
    assert_eq!(
        classify_text("example.com"),
        Argument::Literal(json!("example.com"))
    );
    assert_eq!(classify_text("data"), Argument::Literal(json!("data")));
    assert_eq!(
        classify_text("data. x"),
        Argument::Literal(json!("data. x"))
    );
    assert_eq!(
        classify_text("{{ data.x | upcase }}"),
        Argument::Literal(json!("{{ data.x | upcase }}"))
    );
    assert_eq!(
        classify_text("$message.nope"),
        Argument::Literal(json!("$message.nope"))
    );
}
