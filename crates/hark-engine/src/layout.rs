//! Email layouts: an email step's body placed into the layout its template settings name
//! (`settings.layout_key`), as Knock does.
//!
//! Knock compiles the template into the layout's `{{ content }}` tag and renders the
//! result once, so variables the template `assign`s or `capture`s are visible to the
//! layout after that point, and `settings.pre_content` (Liquid placed before the layout)
//! can set variables for the part above it. Hark does the same: each plain
//! `{{ content }}` tag is replaced by the template's source before rendering. `content`
//! is also a variable holding the separately rendered body, for layouts that use it in
//! any other way (`{{ content | strip }}`), and for a text body derived from the HTML,
//! which has no source.

use hark_store::EmailLayout;
use hark_template::{RenderContext, Renderer};
use serde_json::{Map, Value};

use crate::render::StepRenderError;

/// The layout every Knock environment starts with. A step naming it when the environment
/// has not stored one is sent unwrapped, so workflows written for Knock run unchanged.
pub const DEFAULT_LAYOUT_KEY: &str = "default";

/// The layout key an email step's template selects, if any (blank means none).
pub fn layout_key(template: &Map<String, Value>) -> Option<&str> {
    template
        .get("settings")
        .and_then(|s| s.get("layout_key"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// One body to place into a layout: its Liquid source, when the template has one, and
/// its rendered text.
pub struct Body<'a> {
    pub source: Option<&'a str>,
    pub rendered: &'a str,
}

/// Renders `layout` around the bodies of an email step and returns the wrapped HTML and
/// text. The layout sees the step's variables plus `content` and `footer_links`.
pub fn wrap(
    renderer: &Renderer,
    layout: &EmailLayout,
    variables: &Value,
    pre_content: Option<&str>,
    html: Body<'_>,
    text: Body<'_>,
) -> Result<(String, String), StepRenderError> {
    let render = |field: &str, layout_source: &str, body: &Body<'_>| {
        let mut vars = variables.clone();
        if let Value::Object(map) = &mut vars {
            map.insert("content".into(), Value::String(body.rendered.to_string()));
            map.insert("footer_links".into(), layout.footer_links.clone());
        }
        let template_error = |source| StepRenderError::Template {
            field: format!("layout `{}` {field}", layout.key),
            source,
        };
        let mut source = pre_content.unwrap_or_default().to_string();
        match body.source {
            Some(body_source) => source.push_str(&inline_content(layout_source, body_source)),
            None => source.push_str(layout_source),
        }
        let ctx = RenderContext::from_json(&vars).map_err(template_error)?;
        renderer.render(&source, &ctx).map_err(template_error)
    };
    let html = render("html_layout", &layout.html_layout, &html)?;
    let text = render("text_layout", &layout.text_layout, &text)?;
    Ok((html, text))
}

/// Whether `layout` has a `{{ content }}` output (plain or filtered): Knock requires one.
pub fn has_content_tag(layout: &str) -> bool {
    outputs(layout).any(|(_, inner)| {
        let name = inner.split('|').next().unwrap_or_default().trim();
        name == "content"
    })
}

/// `layout` with every plain `{{ content }}` (also `{{- content -}}`) replaced by `body`.
fn inline_content(layout: &str, body: &str) -> String {
    let mut out = String::with_capacity(layout.len() + body.len());
    let mut copied = 0;
    for (range, inner) in outputs(layout) {
        if inner.trim() == "content" {
            out.push_str(&layout[copied..range.start]);
            out.push_str(body);
            copied = range.end;
        }
    }
    out.push_str(&layout[copied..]);
    out
}

/// Every `{{ … }}` output of a Liquid source: its byte range and the expression inside,
/// without whitespace-control dashes.
fn outputs(source: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    let mut from = 0;
    std::iter::from_fn(move || {
        let start = from + source.get(from..)?.find("{{")?;
        let end = start + 2 + source.get(start + 2..)?.find("}}")? + 2;
        from = end;
        let inner = &source[start + 2..end - 2];
        let inner = inner.strip_prefix('-').unwrap_or(inner);
        let inner = inner.strip_suffix('-').unwrap_or(inner);
        Some((start..end, inner))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_tags_are_found_and_inlined() {
        assert!(has_content_tag("<b>{{ content }}</b>"));
        assert!(has_content_tag("{{- content | strip -}}"));
        assert!(!has_content_tag("{{ contents }} {% content %}"));
        assert_eq!(
            inline_content("<b>{{content}}</b>{{ x }}{{- content -}}", "B"),
            "<b>B</b>{{ x }}B"
        );
        assert_eq!(
            inline_content("{{ content | strip }}", "B"),
            "{{ content | strip }}"
        );
    }
}
