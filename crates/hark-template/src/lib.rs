//! Template rendering: Liquid for every text a channel step produces, markdown → HTML for
//! in-app feed blocks.
//!
//! Renders are bounded: a template whose output exceeds [`MAX_OUTPUT_BYTES`] fails with
//! [`TemplateError::OutputTooLarge`] rather than producing an unbounded message.

use std::sync::Arc;

mod lax;

pub use lax::LaxValue;

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
    parser: Arc<liquid::Parser>,
}

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
        let parser = liquid::ParserBuilder::with_stdlib()
            .build()
            .map_err(|e| TemplateError::Parse(e.to_string()))?;
        Ok(Self {
            parser: Arc::new(parser),
        })
    }

    /// Renders one template string. Plain strings without Liquid markup skip the parser.
    pub fn render(&self, source: &str, ctx: &RenderContext) -> Result<String, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") {
            return bounded(source.to_string());
        }
        check_range_literals(source)?;
        let template = self
            .parser
            .parse(source)
            .map_err(|e| TemplateError::Parse(e.to_string()))?;
        let mut out = BoundedWriter {
            buf: Vec::with_capacity(source.len() * 2),
        };
        match template.render_to(&mut out, &ctx.globals) {
            Ok(()) => bounded(String::from_utf8_lossy(&out.buf).into_owned()),
            // The writer refuses bytes past the limit, which stops a runaway loop early.
            Err(_) if out.buf.len() >= MAX_OUTPUT_BYTES => Err(TemplateError::OutputTooLarge {
                limit: MAX_OUTPUT_BYTES,
            }),
            Err(e) => Err(TemplateError::Render(e.to_string())),
        }
    }
}

/// The largest literal range a loop may iterate (`(1..N)`); Liquid materialises ranges.
pub const MAX_RANGE_ITEMS: i64 = 10_000;

/// Refuses literal ranges such as `(1..1000000000)` before Liquid allocates them.
fn check_range_literals(source: &str) -> Result<(), TemplateError> {
    let bytes = source.as_bytes();
    let mut i = 0;
    while let Some(pos) = source[i..].find("..") {
        let at = i + pos;
        let start: String = source[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let end: String = source[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        if let (Ok(a), Ok(b)) = (start.trim().parse::<i64>(), end.trim().parse::<i64>()) {
            if b.saturating_sub(a) >= MAX_RANGE_ITEMS {
                return Err(TemplateError::Render(format!(
                    "the range ({a}..{b}) exceeds {MAX_RANGE_ITEMS} items"
                )));
            }
        }
        i = at + 2;
        if i >= bytes.len() {
            break;
        }
    }
    Ok(())
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
