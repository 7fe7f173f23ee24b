//! Recipients and actors as a trigger names them: a user id, or an inline user to identify.

use serde_json::{Map, Value};

/// A field-level validation problem, reported in 422 responses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Properties that belong to the user record itself rather than to custom data.
/// Everything else a caller sends is kept and flattened back onto the user.
pub const RESERVED_USER_FIELDS: &[&str] = &[
    "id",
    "__typename",
    "updated_at",
    "channel_data",
    "preferences",
];

#[derive(Debug, Clone, PartialEq)]
pub enum RecipientRequest {
    /// A reference to a user that may or may not exist yet.
    UserId(String),
    /// A user to create or update before the run starts.
    InlineUser {
        id: String,
        properties: Map<String, Value>,
    },
}

impl RecipientRequest {
    pub fn id(&self) -> &str {
        match self {
            RecipientRequest::UserId(id) => id,
            RecipientRequest::InlineUser { id, .. } => id,
        }
    }

    /// Parses one entry of `recipients` (or the `actor`). `field` names it in errors.
    pub fn parse(value: &Value, field: &str) -> Result<Self, FieldError> {
        match value {
            Value::String(id) => {
                validate_id(id, field)?;
                Ok(RecipientRequest::UserId(id.clone()))
            }
            Value::Object(map) => {
                if map.get("collection").is_some_and(|c| !c.is_null()) {
                    return Err(FieldError::new(
                        field,
                        "object recipients are not supported by this server yet",
                    ));
                }
                let id = match map.get("id") {
                    Some(Value::String(id)) => id.clone(),
                    _ => return Err(FieldError::new(field, "must have a string `id`")),
                };
                validate_id(&id, field)?;
                let mut properties = map.clone();
                properties.remove("id");
                properties.remove("collection");
                Ok(RecipientRequest::InlineUser { id, properties })
            }
            _ => Err(FieldError::new(
                field,
                "must be a user id string or an object with an `id`",
            )),
        }
    }
}

/// Ids are opaque strings chosen by the customer; we only bound them.
pub fn validate_id(id: &str, field: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "can't be blank"));
    }
    if id.len() > 255 {
        return Err(FieldError::new(field, "must be at most 255 characters"));
    }
    Ok(())
}

/// Validates the properties of a user as sent to identify. Known fields must have the
/// documented types; custom properties are free-form.
pub fn validate_user_properties(props: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in [
        "email",
        "name",
        "phone_number",
        "avatar",
        "timezone",
        "locale",
    ] {
        if let Some(v) = props.get(field) {
            if !(v.is_string() || v.is_null()) {
                errors.push(FieldError::new(field, "must be a string"));
            }
        }
    }
    if let Some(Value::String(email)) = props.get("email") {
        if !email.is_empty() && !email.contains('@') {
            errors.push(FieldError::new("email", "must be a valid email address"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_ids_and_inline_users() {
        assert_eq!(
            RecipientRequest::parse(&json!("u1"), "recipients[0]"),
            Ok(RecipientRequest::UserId("u1".into()))
        );
        let inline = RecipientRequest::parse(&json!({"id": "u2", "email": "a@b.c"}), "r")
            .expect("inline user parses");
        match inline {
            RecipientRequest::InlineUser { id, properties } => {
                assert_eq!(id, "u2");
                assert_eq!(properties.get("email"), Some(&json!("a@b.c")));
                assert!(properties.get("id").is_none());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_recipients() {
        assert!(RecipientRequest::parse(&json!(5), "r").is_err());
        assert!(RecipientRequest::parse(&json!(""), "r").is_err());
        assert!(RecipientRequest::parse(&json!({"email": "x@y"}), "r").is_err());
        assert!(
            RecipientRequest::parse(&json!({"id": "p", "collection": "projects"}), "r").is_err()
        );
    }

    #[test]
    fn validates_known_user_fields() {
        let props = json!({"email": 5, "name": "n", "plan": {"tier": 1}});
        let errors = validate_user_properties(props.as_object().expect("object"));
        assert_eq!(errors, vec![FieldError::new("email", "must be a string")]);
    }
}
