//! Finding the links in rendered content and replacing their targets. Only `https://`
//! URLs are eligible, as in Knock: anything else (plain `http://`, `mailto:`, relative
//! paths, Liquid leftovers) is left exactly as it was.
//!
//! These are small scanners rather than full HTML/Markdown parsers: they must leave
//! every byte they do not rewrite untouched, which a parse-and-reserialize would not.

use std::collections::HashSet;

use serde_json::Value;

/// The attribute that opts one HTML anchor out of link tracking; it is removed from the
/// output.
pub const NO_TRACK_ATTRIBUTE: &str = "data-knock-no-track";

const HTTPS: &str = "https://";

/// Whether `url` may be wrapped in a tracking URL.
pub fn is_trackable(url: &str) -> bool {
    url.len() > HTTPS.len()
        && url
            .get(..HTTPS.len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(HTTPS))
}

/// The result of rewriting HTML: the new HTML and the targets of the anchors that opted
/// out, so a text version of the same email can leave them alone too.
pub struct RewrittenHtml {
    pub html: String,
    pub untracked: HashSet<String>,
}

/// Replaces the `href` of every `<a>` whose target is trackable with `wrap(target)`;
/// anchors carrying [`NO_TRACK_ATTRIBUTE`] keep their `href` and lose the attribute.
pub fn rewrite_html_anchors(html: &str, wrap: &dyn Fn(&str) -> String) -> RewrittenHtml {
    let mut out = String::with_capacity(html.len());
    let mut untracked = HashSet::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(start) = find_anchor_start(html, from) {
        let Some(tag_end) = tag_end(html, start) else {
            break;
        };
        // The attributes sit between `<a` and `>` (or `/>`).
        let attrs_start = start + 2;
        let attrs = parse_attributes(&html[attrs_start..tag_end]);
        let no_track = attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(NO_TRACK_ATTRIBUTE));
        let href = attrs.iter().find(|a| a.name.eq_ignore_ascii_case("href"));
        if let Some(no_track) = no_track {
            out.push_str(&html[copied..attrs_start + no_track.span.start]);
            copied = attrs_start + no_track.span.end;
            if let Some(value) = href.and_then(|h| h.value.as_ref()) {
                untracked.insert(decode_entities(&html[attrs_start..][value.clone()]));
            }
        } else if let Some(value) = href.and_then(|h| h.value.clone()) {
            let target = decode_entities(&html[attrs_start..][value.clone()]);
            if is_trackable(&target) {
                out.push_str(&html[copied..attrs_start + value.start]);
                out.push_str(&wrap(&target));
                copied = attrs_start + value.end;
            }
        }
        from = tag_end + 1;
    }
    out.push_str(&html[copied..]);
    RewrittenHtml {
        html: out,
        untracked,
    }
}

/// The byte offset of the next `<a` that opens an anchor tag (not `<abbr`, `<area>`).
fn find_anchor_start(html: &str, from: usize) -> Option<usize> {
    let bytes = html.as_bytes();
    let mut at = from;
    while let Some(offset) = html.get(at..)?.find('<') {
        let start = at + offset;
        let is_a = bytes
            .get(start + 1)
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'));
        let ends_name = bytes
            .get(start + 2)
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/');
        if is_a && ends_name {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// The offset of the `>` closing the tag that starts at `start`, skipping quoted values.
fn tag_end(html: &str, start: usize) -> Option<usize> {
    let mut quote = None;
    for (i, b) in html.bytes().enumerate().skip(start) {
        match (quote, b) {
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// One attribute of a tag: `span` covers it with its leading whitespace (what to cut to
/// remove it), `value` the value without quotes.
struct Attribute<'a> {
    name: &'a str,
    span: std::ops::Range<usize>,
    value: Option<std::ops::Range<usize>>,
}

fn parse_attributes(attrs: &str) -> Vec<Attribute<'_>> {
    let bytes = attrs.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let span_start = i;
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len()
            && !bytes[i].is_ascii_whitespace()
            && !matches!(bytes[i], b'=' | b'/' | b'>')
        {
            i += 1;
        }
        if name_start == i {
            break;
        }
        let name = &attrs[name_start..i];
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let mut value = None;
        if bytes.get(j) == Some(&b'=') {
            j += 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            match bytes.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let value_start = j + 1;
                    let value_end = attrs[value_start..]
                        .find(q as char)
                        .map_or(bytes.len(), |n| value_start + n);
                    value = Some(value_start..value_end);
                    i = (value_end + 1).min(bytes.len());
                }
                _ => {
                    let value_start = j;
                    while j < bytes.len() && !bytes[j].is_ascii_whitespace() && bytes[j] != b'>' {
                        j += 1;
                    }
                    value = Some(value_start..j);
                    i = j;
                }
            }
        }
        out.push(Attribute {
            name,
            span: span_start..i,
            value,
        });
    }
    out
}

/// The few entities that appear in URLs inside attributes; others are left as written.
fn decode_entities(value: &str) -> String {
    if !value.contains('&') {
        return value.to_string();
    }
    value
        .replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

/// The end of a bare URL starting at `start`: up to whitespace or a character that
/// cannot be in one, without trailing punctuation of the sentence around it.
fn bare_url_end(text: &str, start: usize, stop_at: &[char]) -> usize {
    let rest = &text[start..];
    let mut end = rest
        .find(|c: char| {
            c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`') || stop_at.contains(&c)
        })
        .unwrap_or(rest.len());
    loop {
        let url = &rest[..end];
        let Some(last) = url.chars().last() else {
            break;
        };
        let unbalanced_paren = last == ')' && url.matches('(').count() < url.matches(')').count();
        if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'') || unbalanced_paren {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    start + end
}

/// The next `https://` at or after `from`, matched case-insensitively.
fn find_https(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    (from..bytes.len().saturating_sub(HTTPS.len() - 1)).find(|&i| {
        bytes[i..i + HTTPS.len()].eq_ignore_ascii_case(HTTPS.as_bytes()) && text.is_char_boundary(i)
    })
}

/// Replaces every bare trackable URL in plain text (SMS, an email's text part) with
/// `wrap(url)`, except those in `untracked`.
pub fn rewrite_bare_urls(
    text: &str,
    untracked: &HashSet<String>,
    wrap: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    while let Some(start) = find_https(text, copied) {
        let end = bare_url_end(text, start, &[]);
        let url = &text[start..end];
        out.push_str(&text[copied..start]);
        if is_trackable(url) && !untracked.contains(url) {
            out.push_str(&wrap(url));
        } else {
            out.push_str(url);
        }
        // A match is at least `https://` long, so the scan always moves on.
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Rewrites Markdown: link targets (`[text](https://…)`) are replaced by the tracking
/// URL, bare URLs become links to it (`[https://…](tracking URL)`), and URLs inside a
/// link's text are left as they are. Raw HTML anchors are rewritten as in HTML.
pub fn rewrite_markdown(markdown: &str, wrap: &dyn Fn(&str) -> String) -> String {
    let html_done = rewrite_html_anchors(markdown, wrap).html;
    let text = html_done.as_str();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    while let Some(start) = find_https(text, copied) {
        let before = &text[..start];
        let is_link_target = before.ends_with("](") || before.ends_with("](<");
        let in_link_text = inside_link_text(before);
        let in_html_attribute =
            before.ends_with('"') || before.ends_with('\'') || before.ends_with('=');
        let end = if is_link_target {
            bare_url_end(text, start, &[')'])
        } else {
            bare_url_end(text, start, &['[', ']', '(', ')'])
        };
        let url = &text[start..end];
        out.push_str(&text[copied..start]);
        if !is_trackable(url) || in_link_text || in_html_attribute {
            out.push_str(url);
        } else if is_link_target {
            out.push_str(&wrap(url));
        } else {
            out.push('[');
            out.push_str(url);
            out.push_str("](");
            out.push_str(&wrap(url));
            out.push(')');
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether the text just before a URL leaves it inside an open `[` link text.
fn inside_link_text(before: &str) -> bool {
    let line = before.rsplit('\n').next().unwrap_or(before);
    let mut depth: i32 = 0;
    for c in line.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = (depth - 1).max(0),
            _ => {}
        }
    }
    depth > 0
}

/// Keys whose string value is a link a person follows in chat JSON (Slack Block Kit
/// buttons and attachments, Adaptive Card actions, Discord embeds). Image URLs are not
/// in the list: wrapping them would make the chat client load a redirect.
const LINK_KEYS: &[&str] = &[
    "url",
    "href",
    "link",
    "action_url",
    "title_link",
    "author_link",
];

/// Rewrites the links in a chat provider's JSON body: link-valued keys, and Slack's
/// `<https://…|label>` links inside text.
pub fn rewrite_chat_json(value: &mut Value, wrap: &dyn Fn(&str) -> String) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    Value::String(s) if LINK_KEYS.contains(&key.as_str()) && is_trackable(s) => {
                        *s = wrap(s);
                    }
                    Value::String(s) if s.contains("<http") => *s = rewrite_slack_links(s, wrap),
                    _ => rewrite_chat_json(item, wrap),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_chat_json(i, wrap)),
        _ => {}
    }
}

/// Slack mrkdwn links: `<https://…>` and `<https://…|label>`.
fn rewrite_slack_links(text: &str, wrap: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    while let Some(offset) = text[copied..].find('<') {
        let start = copied + offset + 1;
        let Some(len) = text[start..].find(['|', '>']) else {
            break;
        };
        let url = &text[start..start + len];
        out.push_str(&text[copied..start]);
        if is_trackable(url) && !url.contains(char::is_whitespace) {
            out.push_str(&wrap(url));
        } else {
            out.push_str(url);
        }
        copied = start + len;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wrap(url: &str) -> String {
        format!("T[{url}]")
    }

    #[test]
    fn anchors_with_either_quote_are_wrapped() {
        let html = r#"<p><a href="https://a.example/x?y=1&amp;z=2">A</a> <A class=b HREF='https://b.example'>B</A> <a href=https://c.example>C</a></p>"#;
        assert_eq!(
            rewrite_html_anchors(html, &wrap).html,
            r#"<p><a href="T[https://a.example/x?y=1&z=2]">A</a> <A class=b HREF='T[https://b.example]'>B</A> <a href=T[https://c.example]>C</a></p>"#
        );
    }

    #[test]
    fn only_https_anchors_are_eligible() {
        let html = r#"<a href="http://a.example">A</a><a href="mailto:x@y">M</a><a href="/rel">R</a><abbr title="https://x.example">X</abbr><a name="top">T</a>"#;
        assert_eq!(rewrite_html_anchors(html, &wrap).html, html);
    }

    #[test]
    fn no_track_anchors_keep_their_href_and_lose_the_attribute() {
        let html = r#"<a href="https://example.com/privacy" data-knock-no-track>Privacy</a> <a data-knock-no-track="" href='https://example.com/help'>Help</a> <a href="https://example.com/go">Go</a>"#;
        let rewritten = rewrite_html_anchors(html, &wrap);
        assert_eq!(
            rewritten.html,
            r#"<a href="https://example.com/privacy">Privacy</a> <a href='https://example.com/help'>Help</a> <a href="T[https://example.com/go]">Go</a>"#
        );
        assert!(rewritten.untracked.contains("https://example.com/privacy"));
        assert!(rewritten.untracked.contains("https://example.com/help"));
    }

    #[test]
    fn quoted_greater_than_does_not_end_the_tag() {
        let html = r#"<a title="a > b" href="https://x.example">X</a>"#;
        assert_eq!(
            rewrite_html_anchors(html, &wrap).html,
            r#"<a title="a > b" href="T[https://x.example]">X</a>"#
        );
    }

    #[test]
    fn bare_urls_in_text_are_wrapped_without_sentence_punctuation() {
        let untracked = HashSet::from(["https://example.com/privacy".to_string()]);
        assert_eq!(
            rewrite_bare_urls(
                "Track it: https://x.example/t/1. Or (https://y.example/a_(b)) or http://z.example, https://example.com/privacy",
                &untracked,
                &wrap
            ),
            "Track it: T[https://x.example/t/1]. Or (T[https://y.example/a_(b)]) or http://z.example, https://example.com/privacy"
        );
        assert_eq!(rewrite_bare_urls("https://", &untracked, &wrap), "https://");
        assert_eq!(
            rewrite_bare_urls("é https://é.example ü", &untracked, &wrap),
            "é T[https://é.example] ü"
        );
    }

    #[test]
    fn markdown_links_and_bare_urls() {
        assert_eq!(
            rewrite_markdown(
                "See [the order](https://shop.example/o/1) or https://shop.example/help.\n[https://a.example](https://a.example) [docs](http://plain.example)",
                &wrap
            ),
            "See [the order](T[https://shop.example/o/1]) or [https://shop.example/help](T[https://shop.example/help]).\n[https://a.example](T[https://a.example]) [docs](http://plain.example)"
        );
        assert_eq!(
            rewrite_markdown(r#"Raw <a href="https://h.example">h</a>"#, &wrap),
            r#"Raw <a href="T[https://h.example]">h</a>"#
        );
    }

    #[test]
    fn block_kit_links_are_wrapped_and_images_are_not() {
        let mut blocks = json!([
            {"type": "section", "text": {"type": "mrkdwn", "text": "Open <https://app.example/o/1|your order> or <http://x.example>"},
             "accessory": {"type": "image", "image_url": "https://img.example/a.png"}},
            {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "View"}, "url": "https://app.example/o/1"}]},
            {"title_link": "https://app.example", "url": "http://insecure.example"}
        ]);
        rewrite_chat_json(&mut blocks, &wrap);
        assert_eq!(
            blocks,
            json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": "Open <T[https://app.example/o/1]|your order> or <http://x.example>"},
                 "accessory": {"type": "image", "image_url": "https://img.example/a.png"}},
                {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "View"}, "url": "T[https://app.example/o/1]"}]},
                {"title_link": "T[https://app.example]", "url": "http://insecure.example"}
            ])
        );
    }
}
