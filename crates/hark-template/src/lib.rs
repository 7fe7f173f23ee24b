//! Template rendering: Liquid for every text a channel step produces, markdown → HTML for
//! in-app feed blocks.
//!
//! Renders are bounded: a template whose output exceeds [`MAX_OUTPUT_BYTES`] fails with
//! [`TemplateError::OutputTooLarge`] rather than producing an unbounded message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod filters;
mod language;
mod lax;
mod runtime;

pub use lax::LaxValue;

use liquid_core::parser::Language;
use liquid_core::runtime::{Renderable, Template};
use runtime::LaxRuntime;
use serde_json::Value;

/// Upper bound for a single rendered field.
pub const MAX_OUTPUT_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template failed to parse: {0}")]
    Parse(String),
    #[error("template failed to render: {0}")]
    Render(String),
    #[error("rendered output exceeds {limit} bytes")]
    OutputTooLarge { limit: usize },
    #[error("template variables must be a JSON object")]
    BadContext,
}

/// A Liquid environment shared by all renders.
#[derive(Clone)]
pub struct Renderer {
    language: Arc<Language>,
    /// Parsed templates by source text. Workflow versions are immutable, so the same
    /// sources come back for every recipient of a run.
    parsed: Arc<Mutex<HashMap<String, Arc<Template>>>>,
}

/// Parsed templates kept at most; the cache starts over when full.
const MAX_CACHED_TEMPLATES: usize = 2048;

/// The variables a template sees, already converted for Liquid.
pub struct RenderContext {
    globals: LaxValue,
}

impl RenderContext {
    /// Builds the context from a JSON object whose top-level keys become Liquid globals
    /// (`recipient`, `actor`, `data`, `vars`, `tenant`, `workflow`, `timestamp`).
    pub fn from_json(vars: &Value) -> Result<Self, TemplateError> {
        if !vars.is_object() {
            return Err(TemplateError::BadContext);
        }
        Ok(Self {
            globals: LaxValue::from_json(vars),
        })
    }
}

impl Renderer {
    pub fn new() -> Result<Self, TemplateError> {
        Ok(Self {
            language: Arc::new(language::knock_liquid()),
            parsed: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn parse_cached(&self, source: &str) -> Result<Arc<Template>, TemplateError> {
        let cached = self
            .parsed
            .lock()
            .ok()
            .and_then(|cache| cache.get(source).cloned());
        if let Some(template) = cached {
            return Ok(template);
        }
        let template = Arc::new(parse(source, &self.language)?);
        if let Ok(mut cache) = self.parsed.lock() {
            if cache.len() >= MAX_CACHED_TEMPLATES {
                cache.clear();
            }
            cache.insert(source.to_string(), template.clone());
        }
        Ok(template)
    }

    /// Renders one template string. Plain strings without Liquid markup skip the parser.
    pub fn render(&self, source: &str, ctx: &RenderContext) -> Result<String, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") {
            return bounded(source.to_string());
        }
        check_ranges(source, &self.language, ctx)?;
        let template = self.parse_cached(source)?;
        let mut out = BoundedWriter {
            buf: Vec::with_capacity(source.len() * 2),
        };
        match template.render_to(&mut out, &LaxRuntime::new(&ctx.globals)) {
            Ok(()) => bounded(String::from_utf8_lossy(&out.buf).into_owned()),
            // The writer refuses bytes past the limit, which stops a runaway loop early.
            Err(_) if out.buf.len() >= MAX_OUTPUT_BYTES => Err(TemplateError::OutputTooLarge {
                limit: MAX_OUTPUT_BYTES,
            }),
            Err(e) => Err(TemplateError::Render(e.to_string())),
        }
    }
}

/// The largest range a loop may iterate (`(a..b)`); Liquid materialises ranges in memory.
pub const MAX_RANGE_ITEMS: i64 = 10_000;

/// Finds `(a..b)` ranges inside `{% ... %}` tags and checks their size before Liquid
/// allocates them. Bounds that are variables are looked up in the render context; a bound
/// that can't be resolved there (e.g. set by `assign` inside the template) is refused, since
/// its size can't be known in advance.
fn check_ranges(source: &str, parser: &Language, ctx: &RenderContext) -> Result<(), TemplateError> {
    let mut rest = source;
    while let Some(open) = rest.find("{%") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("%}") else { break };
        let tag = &after[..close];
        let mut scan = tag;
        while let Some(dots) = scan.find("..") {
            let left = &scan[..dots];
            let right = &scan[dots + 2..];
            if let (Some(lp), Some(rp)) = (left.rfind('('), right.find(')')) {
                let a = range_bound(left[lp + 1..].trim(), parser, ctx)?;
                let b = range_bound(right[..rp].trim(), parser, ctx)?;
                if b.saturating_sub(a) >= MAX_RANGE_ITEMS {
                    return Err(TemplateError::Render(format!(
                        "the range ({a}..{b}) exceeds {MAX_RANGE_ITEMS} items"
                    )));
                }
            }
            scan = &right[right.len().min(1)..];
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

fn range_bound(expr: &str, parser: &Language, ctx: &RenderContext) -> Result<i64, TemplateError> {
    if let Ok(n) = expr.parse::<i64>() {
        return Ok(n);
    }
    let unresolved = || {
        TemplateError::Render(format!(
            "the range bound `{expr}` must be a number or a variable holding one"
        ))
    };
    let template = parse(&format!("{{{{ {expr} }}}}"), parser).map_err(|_| unresolved())?;
    let value = template
        .render(&LaxRuntime::new(&ctx.globals))
        .map_err(|_| unresolved())?;
    let value = value.trim();
    value
        .parse::<i64>()
        .or_else(|_| value.parse::<f64>().map(|f| f as i64))
        .map_err(|_| unresolved())
}

fn parse(source: &str, language: &Language) -> Result<Template, TemplateError> {
    liquid_core::parser::parse(source, language)
        .map(Template::new)
        .map_err(|e| TemplateError::Parse(e.to_string()))
}

struct BoundedWriter {
    buf: Vec<u8>,
}

impl std::io::Write for BoundedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            let room = MAX_OUTPUT_BYTES - self.buf.len().min(MAX_OUTPUT_BYTES);
            self.buf.extend_from_slice(&data[..room.min(data.len())]);
            return Err(std::io::Error::other("render output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn bounded(output: String) -> Result<String, TemplateError> {
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(TemplateError::OutputTooLarge {
            limit: MAX_OUTPUT_BYTES,
        });
    }
    Ok(output)
}

/// Renders markdown to HTML the way feed blocks carry it in `rendered`.
pub fn markdown_to_html(markdown: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(markdown, pulldown_cmark::Options::all());
    let mut html = String::with_capacity(markdown.len() + 16);
    pulldown_cmark::html::push_html(&mut html, parser);
    html.trim_end().to_string()
}

/// Produces a plain-text alternative from an HTML body (tags dropped, entities decoded for
/// the common cases, whitespace collapsed per line).
pub fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for ch in html.chars() {
        match ch {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
                ) {
                    text.push('\n');
                }
            }
            _ if in_tag => tag.push(ch),
            _ => text.push(ch),
        }
    }
    let decoded = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    decoded
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> RenderContext {
        RenderContext::from_json(&json!({
            "recipient": {"id": "u1", "name": "Ada"},
            "data": {"items": [1, 2, 3], "url": "https://x.test"},
        }))
        .expect("context")
    }

    #[test]
    fn json_filter_serialises_values() {
        let r = Renderer::new().expect("renderer");
        let out = r.render("{{ data | json }}", &ctx()).expect("render");
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert!(parsed.is_object(), "{out}");
        assert_eq!(
            r.render("{{ missing | json }}", &ctx()).expect("nil"),
            "null"
        );
    }

    #[test]
    fn renders_variables_and_filters() {
        let r = Renderer::new().expect("renderer");
        assert_eq!(
            r.render(
                "Hi {{ recipient.name | upcase }} ({{ data.items | size }})",
                &ctx()
            )
            .expect("render"),
            "Hi ADA (3)"
        );
        assert_eq!(r.render("plain", &ctx()).expect("render"), "plain");
    }

    #[test]
    fn missing_values_render_as_nothing() {
        let r = Renderer::new().expect("renderer");
        assert_eq!(
            r.render(
                "[{{ data.nope }}][{{ nothing.at.all }}][{{ data.nope.deeper }}]",
                &ctx()
            )
            .expect("render"),
            "[][][]"
        );
        assert_eq!(
            r.render(
                "{{ data.nope | default: 'x' }}{% if data.nope %}y{% endif %}",
                &ctx()
            )
            .expect("render"),
            "x"
        );
        assert_eq!(
            r.render(
                "{{ data.items[0] }}{{ data.items.last }}{{ data.items[-1] }}{{ data.items.size }}",
                &ctx()
            )
            .expect("render"),
            "1333"
        );
        assert_eq!(
            r.render(
                "{% for i in data.items %}{{ i }}{% endfor %}{% for x in data.none %}z{% endfor %}",
                &ctx()
            )
            .expect("render"),
            "123"
        );
    }

    #[test]
    fn loop_items_and_assigned_values_are_lax_too() {
        let r = Renderer::new().expect("renderer");
        let ctx = RenderContext::from_json(&json!({
            "activities": [
                {"data": {"item": "a", "qty": 2}},
                {"data": {"item": "b"}},
            ],
            "data": {"order": {"id": 7}},
        }))
        .expect("context");
        assert_eq!(
            r.render(
                "{% for a in activities %}[{{ a.data.item }}:{{ a.data.qty }}:{{ a.nope.deeper }}]{% endfor %}",
                &ctx
            )
            .expect("render"),
            "[a:2:][b::]"
        );
        assert_eq!(
            r.render(
                "{% assign o = data.order %}{{ o.id }}|{{ o.missing }}|{{ never_assigned.x }}",
                &ctx
            )
            .expect("render"),
            "7||"
        );
        assert_eq!(
            r.render(
                "{% capture c %}x{{ data.order.id }}{% endcapture %}{{ c }}{% increment n %}{% increment n %}",
                &ctx
            )
            .expect("render"),
            "x701"
        );
        assert_eq!(
            r.render(
                "{% for a in activities %}{% for b in activities %}{{ forloop.parentloop.index }}{{ forloop.index }}{{ b.data.zz }} {% endfor %}{% endfor %}",
                &ctx
            )
            .expect("render"),
            "11 12 21 22 "
        );
    }

    #[test]
    fn cached_templates_render_each_context() {
        let r = Renderer::new().expect("renderer");
        let t = "Hi {{ recipient.name }}";
        for name in ["Ada", "Grace", "Ada"] {
            let ctx =
                RenderContext::from_json(&json!({"recipient": {"name": name}})).expect("context");
            assert_eq!(r.render(t, &ctx).expect("render"), format!("Hi {name}"));
        }
        assert!(
            r.render("{% if %}", &ctx()).is_err(),
            "parse errors are not cached as success"
        );
        assert!(r.render("{% if %}", &ctx()).is_err());
    }

    #[test]
    fn reports_bad_templates() {
        let r = Renderer::new().expect("renderer");
        assert!(matches!(
            r.render("{% if %}", &ctx()),
            Err(TemplateError::Parse(_))
        ));
    }

    #[test]
    fn bounds_output() {
        let r = Renderer::new().expect("renderer");
        let huge =
            "{% for i in (1..5000) %}{% for j in (1..5000) %}0123456789{% endfor %}{% endfor %}";
        assert!(matches!(
            r.render(huge, &ctx()),
            Err(TemplateError::OutputTooLarge { .. })
        ));
    }

    #[test]
    fn refuses_huge_ranges_from_data_or_unknown_bounds() {
        let r = Renderer::new().expect("renderer");
        let big = RenderContext::from_json(&json!({"data": {"n": 1_000_000_000, "m": 3}}))
            .expect("context");
        assert!(r
            .render("{% for i in (1..data.n) %}{% endfor %}", &big)
            .is_err());
        assert_eq!(
            r.render("{% for i in (1..data.m) %}{{ i }}{% endfor %}", &big)
                .expect("small dynamic range"),
            "123"
        );
        assert!(r
            .render(
                "{% assign n = 1000000000 %}{% for i in (1..n) %}{% endfor %}",
                &big
            )
            .is_err());
        assert_eq!(
            r.render("Loading... {% if data.m %}ok{% endif %}", &big)
                .expect("dots outside ranges"),
            "Loading... ok"
        );
    }

    #[test]
    fn refuses_huge_literal_ranges() {
        let r = Renderer::new().expect("renderer");
        let err = r
            .render("{% for i in (1..1000000000) %}{% endfor %}", &ctx())
            .expect_err("refused");
        assert!(err.to_string().contains("exceeds"), "{err}");
        assert_eq!(
            r.render("{% for i in (1..3) %}{{ i }}{% endfor %}", &ctx())
                .expect("small range"),
            "123"
        );
    }

    #[test]
    fn markdown_and_text() {
        assert_eq!(
            markdown_to_html("Hello **you**"),
            "<p>Hello <strong>you</strong></p>"
        );
        assert_eq!(
            html_to_text("<p>Hi &amp; bye</p><p>next<br>line</p>"),
            "Hi & bye\nnext\nline"
        );
    }
}
