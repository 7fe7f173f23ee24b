//! Knock's Liquid is lax: a missing variable or key renders as nothing instead of failing
//! the message. The `liquid` crate is strict, so templates see values through this tree,
//! whose objects answer every missing key with `nil` (and `nil` itself indexes to `nil`).

use std::collections::BTreeMap;
use std::fmt;

use liquid_core::model::{
    ArrayView, DisplayCow, KStringCow, ObjectView, ScalarCow, State, Value, ValueView,
};
use serde_json::Value as Json;

#[derive(Debug)]
enum Kind {
    Leaf,
    Array(Vec<LaxValue>),
    Object(BTreeMap<String, LaxValue>),
}

/// A value for templates. `plain` is the ordinary Liquid value, used for rendering and
/// comparisons; `kind` carries the lax children for indexing.
pub struct LaxValue {
    plain: Value,
    kind: Kind,
}

impl fmt::Debug for LaxValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.plain.fmt(f)
    }
}

static NIL: LaxValue = LaxValue {
    plain: Value::Nil,
    kind: Kind::Leaf,
};

impl LaxValue {
    pub fn from_json(json: &Json) -> Self {
        match json {
            Json::Array(items) => {
                let children: Vec<LaxValue> = items.iter().map(LaxValue::from_json).collect();
                let plain = Value::Array(children.iter().map(|c| c.plain.clone()).collect());
                LaxValue {
                    plain,
                    kind: Kind::Array(children),
                }
            }
            Json::Object(map) => {
                let children: BTreeMap<String, LaxValue> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), LaxValue::from_json(v)))
                    .collect();
                let plain = Value::Object(
                    children
                        .iter()
                        .map(|(k, v)| (k.clone().into(), v.plain.clone()))
                        .collect(),
                );
                LaxValue {
                    plain,
                    kind: Kind::Object(children),
                }
            }
            Json::Null => LaxValue {
                plain: Value::Nil,
                kind: Kind::Leaf,
            },
            Json::Bool(b) => leaf(Value::scalar(*b)),
            Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => leaf(Value::scalar(i)),
                (None, Some(f)) => leaf(Value::scalar(f)),
                _ => leaf(Value::scalar(n.to_string())),
            },
            Json::String(s) => leaf(Value::scalar(s.clone())),
        }
    }
}

fn leaf(plain: Value) -> LaxValue {
    LaxValue {
        plain,
        kind: Kind::Leaf,
    }
}

impl ValueView for LaxValue {
    fn as_debug(&self) -> &dyn fmt::Debug {
        self
    }
    fn render(&self) -> DisplayCow<'_> {
        self.plain.render()
    }
    fn source(&self) -> DisplayCow<'_> {
        self.plain.source()
    }
    fn type_name(&self) -> &'static str {
        self.plain.type_name()
    }
    fn query_state(&self, state: State) -> bool {
        self.plain.query_state(state)
    }
    fn to_kstr(&self) -> KStringCow<'_> {
        self.plain.to_kstr()
    }
    fn to_value(&self) -> Value {
        self.plain.clone()
    }
    fn as_scalar(&self) -> Option<ScalarCow<'_>> {
        self.plain.as_scalar()
    }
    fn as_array(&self) -> Option<&dyn ArrayView> {
        match self.kind {
            Kind::Array(_) => Some(self),
            _ => None,
        }
    }
    fn as_object(&self) -> Option<&dyn ObjectView> {
        match self.kind {
            Kind::Object(_) => Some(self),
            Kind::Leaf if self.plain.is_nil() => Some(self),
            _ => None,
        }
    }
    fn as_state(&self) -> Option<State> {
        self.plain.as_state()
    }
    fn is_nil(&self) -> bool {
        self.plain.is_nil()
    }
}

impl ArrayView for LaxValue {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        match &self.kind {
            Kind::Array(items) => items.len() as i64,
            _ => 0,
        }
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.kind {
            Kind::Array(items) => Box::new(items.iter().map(|v| v as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn contains_key(&self, index: i64) -> bool {
        ArrayView::get(self, index).is_some()
    }
    fn get(&self, index: i64) -> Option<&dyn ValueView> {
        let Kind::Array(items) = &self.kind else {
            return None;
        };
        let len = items.len() as i64;
        let i = if index < 0 { len + index } else { index };
        if (0..len).contains(&i) {
            items
                .as_slice()
                .get(i as usize)
                .map(|v| v as &dyn ValueView)
        } else {
            None
        }
    }
}

impl ObjectView for LaxValue {
    fn as_value(&self) -> &dyn ValueView {
        self
    }
    fn size(&self) -> i64 {
        match &self.kind {
            Kind::Object(map) => map.len() as i64,
            _ => 0,
        }
    }
    fn keys<'k>(&'k self) -> Box<dyn Iterator<Item = KStringCow<'k>> + 'k> {
        match &self.kind {
            Kind::Object(map) => Box::new(map.keys().map(|k| KStringCow::from_ref(k.as_str()))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn values<'k>(&'k self) -> Box<dyn Iterator<Item = &'k dyn ValueView> + 'k> {
        match &self.kind {
            Kind::Object(map) => Box::new(map.values().map(|v| v as &dyn ValueView)),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn iter<'k>(&'k self) -> Box<dyn Iterator<Item = (KStringCow<'k>, &'k dyn ValueView)> + 'k> {
        match &self.kind {
            Kind::Object(map) => Box::new(
                map.iter()
                    .map(|(k, v)| (KStringCow::from_ref(k.as_str()), v as &dyn ValueView)),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn contains_key(&self, _index: &str) -> bool {
        // Every name resolves: unknown ones to nil.
        true
    }
    fn get<'s>(&'s self, index: &str) -> Option<&'s dyn ValueView> {
        let found = match &self.kind {
            Kind::Object(map) => map.get(index),
            _ => None,
        };
        match found {
            Some(v) => Some(v),
            // Let Liquid answer `.size` for objects that have no such key.
            None if index == "size" => None,
            None => Some(&NIL),
        }
    }
}
