//! Filters Knock's Liquid has beyond the standard library.

use liquid_core::{
    Display_filter, Filter, FilterReflection, ParseFilter, Result, Runtime, Value, ValueView,
};

/// `{{ data | json }}`: the value as JSON text, used to pass structured data through
/// string settings such as a trigger-workflow step's `data`.
#[derive(Clone, ParseFilter, FilterReflection)]
#[filter(
    name = "json",
    description = "Serialises the input as JSON.",
    parsed(JsonFilter)
)]
pub struct Json;

#[derive(Debug, Default, Display_filter)]
#[name = "json"]
struct JsonFilter;

impl Filter for JsonFilter {
    fn evaluate(&self, input: &dyn ValueView, _runtime: &dyn Runtime) -> Result<Value> {
        let text = serde_json::to_string(&input.to_value())
            .map_err(|e| liquid_core::Error::with_msg(format!("json: {e}")))?;
        Ok(Value::scalar(text))
    }
}
