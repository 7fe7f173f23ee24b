//! Link and open tracking: a rendered message's links are replaced by signed tracking
//! URLs on this server (`/v1/t/c/{token}`), and an email gets a tracking pixel
//! (`/v1/t/o/{token}`). Following one records the click or the open on the message.
//!
//! Both are off unless the channel's settings turn them on (`link_tracking`,
//! `open_tracking`); a channel step's template `settings` override the channel either
//! way. Push and webhook messages are never rewritten.

pub mod rewrite;
pub mod token;

use hark_core::workflow::ChannelType;
use hark_template::markdown_to_html;
use serde_json::{Map, Value};

use self::rewrite::{rewrite_bare_urls, rewrite_chat_json, rewrite_html_anchors, rewrite_markdown};
pub use self::token::{TokenKind, TrackedLink, TrackingKey};

/// The name of the tracking key in the store's server secrets.
pub const TRACKING_SECRET_NAME: &str = "tracking_hmac_sha256";

/// Where tracking URLs point and the key their tokens are signed with.
#[derive(Debug, Clone)]
pub struct Tracking {
    base_url: String,
    key: TrackingKey,
}

impl Tracking {
    /// `public_url` is this server as recipients reach it, e.g. `https://hark.example.com`.
    pub fn new(public_url: &str, key: TrackingKey) -> Self {
        Self {
            base_url: public_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    pub fn key(&self) -> &TrackingKey {
        &self.key
    }

    pub fn url(&self, kind: TokenKind, link: &TrackedLink) -> String {
        format!(
            "{}/v1/t/{}/{}",
            self.base_url,
            kind.path_segment(),
            self.key.sign(kind, link)
        )
    }
}

/// Which kinds of tracking apply to one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackingSwitches {
    pub links: bool,
    pub opens: bool,
}

impl TrackingSwitches {
    /// The channel's own switches from its settings; they must be booleans, and only
    /// channel types that support them may set them.
    pub fn from_channel_settings(
        channel_type: ChannelType,
        settings: &Value,
    ) -> Result<Self, String> {
        let flag = |name: &str| match settings.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(on)) => Ok(*on),
            Some(_) => Err(format!("`{name}` must be true or false")),
        };
        let switches = Self {
            links: flag("link_tracking")?,
            opens: flag("open_tracking")?,
        };
        if switches.links && !supports_links(channel_type) {
            return Err(format!(
                "`link_tracking` is not available for {} channels",
                channel_type.as_str()
            ));
        }
        if switches.opens && channel_type != ChannelType::Email {
            return Err("`open_tracking` is only available for email channels".into());
        }
        Ok(switches)
    }

    /// The switches for one step: the template's `settings.link_tracking` and
    /// `settings.open_tracking`, when given, replace the channel's.
    pub fn for_step(self, template: &Map<String, Value>) -> Self {
        let settings = template.get("settings");
        let flag = |name: &str, channel: bool| match settings.and_then(|s| s.get(name)) {
            Some(Value::Bool(on)) => *on,
            Some(Value::String(text)) if text.trim() == "true" => true,
            Some(Value::String(text)) if text.trim() == "false" => false,
            _ => channel,
        };
        Self {
            links: flag("link_tracking", self.links),
            opens: flag("open_tracking", self.opens),
        }
    }
}

fn supports_links(channel_type: ChannelType) -> bool {
    matches!(
        channel_type,
        ChannelType::Email | ChannelType::Sms | ChannelType::Chat | ChannelType::InAppFeed
    )
}

/// Rewrites a rendered message's content (the shapes [`crate::render::render_step`]
/// builds) for the switches that are on.
pub fn apply(
    content: &mut Value,
    channel_type: ChannelType,
    switches: TrackingSwitches,
    tracking: &Tracking,
    message_id: &str,
    environment_id: &str,
) {
    let click = |target: &str| {
        tracking.url(
            TokenKind::Click,
            &TrackedLink {
                message_id: message_id.to_string(),
                environment_id: environment_id.to_string(),
                target: Some(target.to_string()),
            },
        )
    };
    let links = switches.links && supports_links(channel_type);
    match channel_type {
        ChannelType::Email => {
            let html = content["html_body"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let text = content["text_body"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (mut html, text) = if links {
                let rewritten = rewrite_html_anchors(&html, &click);
                let text = rewrite_bare_urls(&text, &rewritten.untracked, &click);
                (rewritten.html, text)
            } else {
                (html, text)
            };
            if switches.opens && !html.trim().is_empty() {
                let pixel = tracking.url(
                    TokenKind::Open,
                    &TrackedLink {
                        message_id: message_id.to_string(),
                        environment_id: environment_id.to_string(),
                        target: None,
                    },
                );
                html = with_pixel(&html, &pixel);
            }
            content["html_body"] = Value::String(html);
            content["text_body"] = Value::String(text);
        }
        ChannelType::Sms if links => {
            if let Some(body) = content["body"].as_str() {
                let body = rewrite_bare_urls(body, &Default::default(), &click);
                content["body"] = Value::String(body);
            }
        }
        ChannelType::Chat if links => {
            let template = &mut content["template"];
            if let Some(summary) = template["summary"].as_str() {
                let summary = rewrite_markdown(summary, &click);
                template["summary"] = Value::String(summary);
            }
            rewrite_markdown_blocks(&mut template["blocks"], &click);
            rewrite_chat_json(&mut template["json_content"], &click);
        }
        ChannelType::InAppFeed if links => {
            rewrite_markdown_blocks(&mut content["blocks"], &click);
            if let Some(Value::Array(blocks)) = content.get_mut("blocks") {
                for block in blocks {
                    let kind = block["type"].as_str().map(str::to_string);
                    match kind.as_deref() {
                        // The notification's own link (Knock's clients open it on click).
                        Some("text") if block["name"] == "action_url" => {
                            for field in ["content", "rendered"] {
                                wrap_string(&mut block[field], &click);
                            }
                        }
                        Some("button_set") => {
                            if let Some(Value::Array(buttons)) = block.get_mut("buttons") {
                                for button in buttons {
                                    wrap_string(&mut button["action"], &click);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            wrap_string(&mut content["action_url"], &click);
        }
        _ => {}
    }
}

/// Markdown blocks get their source rewritten and their HTML rendered again from it, so
/// the two never disagree.
fn rewrite_markdown_blocks(blocks: &mut Value, click: &dyn Fn(&str) -> String) {
    let Value::Array(blocks) = blocks else { return };
    for block in blocks {
        if block["type"] != "markdown" {
            continue;
        }
        if let Some(markdown) = block["content"].as_str() {
            let markdown = rewrite_markdown(markdown, click);
            block["rendered"] = Value::String(markdown_to_html(&markdown));
            block["content"] = Value::String(markdown);
        }
    }
}

fn wrap_string(value: &mut Value, click: &dyn Fn(&str) -> String) {
    if let Value::String(url) = value {
        if rewrite::is_trackable(url.trim()) {
            *value = Value::String(click(url.trim()));
        }
    }
}

/// The HTML with the open-tracking pixel before its last `</body>`, or at the end.
fn with_pixel(html: &str, pixel_url: &str) -> String {
    let img =
        format!(r#"<img src="{pixel_url}" width="1" height="1" alt="" style="display:none">"#);
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body>") {
        Some(at) => format!("{}{img}{}", &html[..at], &html[at..]),
        None => format!("{html}{img}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tracking() -> Tracking {
        Tracking::new("https://hark.example.com/", TrackingKey::new(b"k"))
    }

    #[test]
    fn email_links_are_wrapped_and_the_pixel_goes_before_body_end() {
        let t = tracking();
        let mut content = json!({
            "html_body": "<html><BODY><a href=\"https://shop.example/o/1\">Order</a> <a href=\"https://shop.example/privacy\" data-knock-no-track>Privacy</a></BODY></html>",
            "text_body": "Order: https://shop.example/o/1 Privacy: https://shop.example/privacy",
        });
        let on = TrackingSwitches {
            links: true,
            opens: true,
        };
        apply(&mut content, ChannelType::Email, on, &t, "m1", "e1");
        let html = content["html_body"].as_str().expect("html");
        let click = t.url(
            TokenKind::Click,
            &TrackedLink {
                message_id: "m1".into(),
                environment_id: "e1".into(),
                target: Some("https://shop.example/o/1".into()),
            },
        );
        assert!(
            click.starts_with("https://hark.example.com/v1/t/c/"),
            "{click}"
        );
        assert!(html.contains(&format!("href=\"{click}\"")), "{html}");
        assert!(
            html.contains("<a href=\"https://shop.example/privacy\">Privacy</a>"),
            "{html}"
        );
        let pixel_at = html
            .find("<img src=\"https://hark.example.com/v1/t/o/")
            .expect("pixel");
        assert!(pixel_at < html.find("</BODY>").expect("body end"));
        assert_eq!(
            content["text_body"],
            format!("Order: {click} Privacy: https://shop.example/privacy")
        );
    }

    #[test]
    fn off_means_untouched() {
        let html = "<p><a href=\"https://a.example\" data-knock-no-track>A</a></p>";
        let mut content = json!({"html_body": html, "text_body": "https://a.example"});
        let off = TrackingSwitches::default();
        apply(&mut content, ChannelType::Email, off, &tracking(), "m", "e");
        assert_eq!(content["html_body"], html);
        assert_eq!(content["text_body"], "https://a.example");
        let mut html_only = json!({"html_body": "<p>Hi</p>", "text_body": "Hi"});
        let opens = TrackingSwitches {
            links: false,
            opens: true,
        };
        apply(
            &mut html_only,
            ChannelType::Email,
            opens,
            &tracking(),
            "m",
            "e",
        );
        let html = html_only["html_body"].as_str().unwrap_or_default();
        assert!(
            html.starts_with("<p>Hi</p><img src=\"https://hark.example.com/v1/t/o/"),
            "{html}"
        );
        assert!(html.ends_with("width=\"1\" height=\"1\" alt=\"\" style=\"display:none\">"));
    }

    #[test]
    fn sms_chat_and_feed_links_are_wrapped() {
        let t = tracking();
        let on = TrackingSwitches {
            links: true,
            opens: false,
        };
        let mut sms = json!({"body": "Track: https://a.example/1", "to": "+1"});
        apply(&mut sms, ChannelType::Sms, on, &t, "m", "e");
        assert!(sms["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Track: https://hark.example.com/v1/t/c/")));
        let mut chat = json!({"template": {"summary": "[Go](https://a.example)", "blocks": [{"type": "markdown", "content": "[Go](https://a.example)", "rendered": "x"}], "json_content": {"url": "https://a.example"}}});
        apply(&mut chat, ChannelType::Chat, on, &t, "m", "e");
        let block = &chat["template"]["blocks"][0];
        assert!(block["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("[Go](https://hark.example.com/v1/t/c/")));
        assert!(block["rendered"]
            .as_str()
            .is_some_and(|r| r.contains("href=\"https://hark.example.com/v1/t/c/")));
        assert!(chat["template"]["json_content"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://hark.example.com/")));
        let mut feed = json!({"blocks": [{"type": "markdown", "content": "https://a.example", "rendered": ""},
                                         {"type": "text", "name": "action_url", "content": "https://a.example", "rendered": "https://a.example"}],
                              "action_url": "https://a.example"});
        apply(&mut feed, ChannelType::InAppFeed, on, &t, "m", "e");
        assert!(feed["blocks"][0]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("[https://a.example](https://hark.example.com/")));
        assert!(feed["blocks"][1]["rendered"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://hark.example.com/")));
        assert!(feed["action_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://hark.example.com/")));
    }

    #[test]
    fn push_and_webhooks_are_never_rewritten() {
        let on = TrackingSwitches {
            links: true,
            opens: true,
        };
        for channel_type in [ChannelType::Push, ChannelType::Http] {
            let mut content = json!({"body": "https://a.example", "url": "https://a.example"});
            let before = content.clone();
            apply(&mut content, channel_type, on, &tracking(), "m", "e");
            assert_eq!(content, before);
        }
    }

    #[test]
    fn switches_come_from_the_channel_and_the_step_overrides_them() {
        let channel = TrackingSwitches::from_channel_settings(
            ChannelType::Email,
            &json!({"link_tracking": true}),
        )
        .expect("valid");
        assert_eq!(
            channel,
            TrackingSwitches {
                links: true,
                opens: false
            }
        );
        let template = json!({"settings": {"link_tracking": false, "open_tracking": true}});
        let template = template.as_object().expect("object");
        assert_eq!(
            channel.for_step(template),
            TrackingSwitches {
                links: false,
                opens: true
            }
        );
        assert!(TrackingSwitches::from_channel_settings(
            ChannelType::Sms,
            &json!({"open_tracking": true})
        )
        .is_err());
        assert!(TrackingSwitches::from_channel_settings(
            ChannelType::Push,
            &json!({"link_tracking": true})
        )
        .is_err());
        assert!(TrackingSwitches::from_channel_settings(
            ChannelType::Email,
            &json!({"link_tracking": "yes"})
        )
        .is_err());
    }
}
