//! Email layouts: the rendered body of an email step placed into the layout its template
//! settings name (`settings.layout_key`), as Knock does.

use hark_store::EmailLayout;
use hark_template::{RenderContext, Renderer};
use serde_json::Value;

use crate::render::StepRenderError;

/// The layout key an email step's template selects, if any (blank means none).
pub fn layout_key(template: &serde_json::Map<String, Value>) -> Option<&str> {
    template
        .get("settings")
        .and_then(|s| s.get("layout_key"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Renders `layout` around an already rendered body: the layout sees the step's usual
/// variables plus `content` (the body) and `footer_links`. Returns the wrapped HTML and
/// text bodies.
pub fn wrap(
    renderer: &Renderer,
    layout: &EmailLayout,
    variables: &Value,
    html_body: &str,
    text_body: &str,
) -> Result<(String, String), StepRenderError> {
    let render = |field: &str, source: &str, content: &str| {
        let mut vars = variables.clone();
        if let Value::Object(map) = &mut vars {
            map.insert("content".into(), Value::String(content.to_string()));
            map.insert("footer_links".into(), layout.footer_links.clone());
        }
        let template_error = |source| StepRenderError::Template {
            field: format!("layout `{}` {field}", layout.key),
            source,
        };
        let ctx = RenderContext::from_json(&vars).map_err(template_error)?;
        renderer.render(source, &ctx).map_err(template_error)
    };
    let html = render("html_layout", &layout.html_layout, html_body)?;
    let text = render("text_layout", &layout.text_layout, text_body)?;
    Ok((html, text))
}
