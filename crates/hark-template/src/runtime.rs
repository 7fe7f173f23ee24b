//! The runtime templates render against. Liquid's own runtime copies every value it
//! looks up into a plain `Value`, which loses [`LaxValue`]'s "missing key is nil" rule, so
//! `{% for item in data.items %}{{ item.missing }}` would fail the whole message. This one
//! hands out borrowed views of the context instead (loop items stay lax) and answers
//! any path it cannot resolve — in the context or in `assign`ed variables — with nil.

use std::cell::RefCell;
use std::collections::BTreeSet;

use liquid_core::model::{
    try_find, KString, KStringCow, KStringRef, Object, ObjectView, ScalarCow, Value, ValueCow,
    ValueView,
};
use liquid_core::runtime::{PartialStore, Registers, RuntimeCore};
use liquid_core::{Result, Runtime};

use crate::lax::LaxValue;

pub struct LaxRuntime<'g> {
    core: RuntimeCore<'static>,
    globals: &'g LaxValue,
    /// Variables set by `assign` and `capture`; they shadow the context.
    assigned: RefCell<Object>,
    /// Counters of `increment` / `decrement`, a namespace of their own.
    indexes: RefCell<Object>,
}

impl<'g> LaxRuntime<'g> {
    pub fn new(globals: &'g LaxValue) -> Self {
        Self {
            core: RuntimeCore::new(),
            globals,
            assigned: RefCell::default(),
            indexes: RefCell::default(),
        }
    }

    fn lookup(&self, path: &[ScalarCow<'_>]) -> Option<ValueCow<'_>> {
        let root = path.first()?.to_kstr();
        {
            let assigned = self.assigned.borrow();
            if assigned.contains_key(root.as_str()) {
                return Some(
                    try_find(assigned.as_value(), path)
                        .map(|v| v.into_owned())
                        .unwrap_or(Value::Nil)
                        .into(),
                );
            }
        }
        try_find(self.globals, path)
    }
}

impl Runtime for LaxRuntime<'_> {
    fn partials(&self) -> &dyn PartialStore {
        self.core.partials()
    }

    fn name(&self) -> Option<KStringRef<'_>> {
        None
    }

    fn roots(&self) -> BTreeSet<KStringCow<'_>> {
        let mut roots: BTreeSet<KStringCow<'_>> = self
            .globals
            .as_object()
            .map_or_else(BTreeSet::new, |o| o.keys().collect());
        roots.extend(
            self.assigned
                .borrow()
                .keys()
                .map(|k| KStringCow::from(k.clone())),
        );
        roots
    }

    fn try_get(&self, path: &[ScalarCow<'_>]) -> Option<ValueCow<'_>> {
        self.lookup(path)
    }

    fn get(&self, path: &[ScalarCow<'_>]) -> Result<ValueCow<'_>> {
        Ok(self.lookup(path).unwrap_or(ValueCow::Owned(Value::Nil)))
    }

    fn set_global(&self, name: KString, val: Value) -> Option<Value> {
        self.assigned.borrow_mut().insert(name, val)
    }

    fn set_index(&self, name: KString, val: Value) -> Option<Value> {
        self.indexes.borrow_mut().insert(name, val)
    }

    fn get_index<'a>(&'a self, name: &str) -> Option<ValueCow<'a>> {
        self.indexes
            .borrow()
            .get(name)
            .map(|v| ValueCow::Owned(v.clone()))
    }

    fn registers(&self) -> &Registers {
        self.core.registers()
    }
}
