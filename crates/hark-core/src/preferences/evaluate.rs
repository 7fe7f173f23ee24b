//! Deciding whether one message may be sent under an effective preference set.

use serde::Serialize;

use super::model::{ChannelSettings, PreferenceSet, ScopeSetting, Setting, SettingMap};
use crate::conditions::{Condition, ConditionGroup, ConditionScope, Evaluation};
use crate::Millis;

/// What is being sent: one channel step of one workflow.
#[derive(Debug, Clone, Copy)]
pub struct MessageTarget<'a> {
    pub workflow_key: &'a str,
    /// The workflow's categories.
    pub categories: &'a [String],
    /// `email`, `sms`, `push`, `chat`, `in_app_feed` or `http`.
    pub channel_type: &'a str,
    pub channel_id: &'a str,
    /// The workflow's `settings.is_commercial`.
    pub commercial: bool,
    /// The workflow's `settings.override_preferences`.
    pub override_preferences: bool,
}

/// The outcome, with enough detail for the run log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// Which preference decided, e.g. `categories.marketing.channel_types.email`,
    /// `override_preferences`, `commercial_subscribed` or `default (no preference set)`.
    /// When several preferences allowed the message together, they are listed in the order
    /// they were checked, separated by `, `.
    pub decided_by: String,
    /// The condition evaluations that took part, in the order they ran.
    pub conditions: Vec<Evaluation>,
}

/// Shown when no preference applies: Knock opts recipients in to everything by default.
pub const NO_PREFERENCE: &str = "default (no preference set)";

/// Evaluates `effective` (see [`super::PreferenceSources::resolve`]) for one message.
///
/// Knock sends only if every preference that applies is true:
///
/// 1. Commercial workflows need `commercial_subscribed` to hold (unset means subscribed).
/// 2. Workflows that override preferences send regardless of everything below.
/// 3. Each of the workflow's categories, then the workflow's own preference, then the
///    top-level channel preferences. A `false` anywhere blocks.
///
/// Within one of those scopes the `channels` entry for the channel beats the
/// `channel_types` entry for its type; across scopes each one must pass on its own, so a
/// category's `email: false` still blocks when the top-level `channels` entry is `true`.
/// Evaluation stops at the first preference that blocks, so `conditions` lists exactly
/// the evaluations that led to the decision.
pub fn evaluate(
    effective: &PreferenceSet,
    target: &MessageTarget<'_>,
    scope: &dyn ConditionScope,
    now: Millis,
) -> Decision {
    let mut run = Run {
        target,
        scope,
        now,
        conditions: Vec::new(),
        passed: Vec::new(),
    };
    match run.check_all(effective) {
        Ok(()) => {
            let decided_by = if target.override_preferences {
                "override_preferences".to_owned()
            } else if run.passed.is_empty() {
                NO_PREFERENCE.to_owned()
            } else {
                run.passed.join(", ")
            };
            Decision {
                allowed: true,
                decided_by,
                conditions: run.conditions,
            }
        }
        Err(blocked_by) => Decision {
            allowed: false,
            decided_by: blocked_by,
            conditions: run.conditions,
        },
    }
}

struct Run<'a, 'b> {
    target: &'a MessageTarget<'b>,
    scope: &'a dyn ConditionScope,
    now: Millis,
    conditions: Vec<Evaluation>,
    /// Preferences that were set and passed.
    passed: Vec<String>,
}

/// `Err` carries the path of the preference that blocked.
type Outcome = Result<(), String>;

impl Run<'_, '_> {
    fn check_all(&mut self, set: &PreferenceSet) -> Outcome {
        if self.target.commercial {
            // Checked before the override on purpose. The docs say an override sends
            // "regardless of the recipient's preferences", but an unsubscribe from
            // commercial mail is a legal opt-out (CAN-SPAM), and the override exists for
            // transactional mail such as password resets, which is never commercial. A
            // workflow marked both therefore still honours the unsubscribe.
            if let Some(setting) = &set.commercial_subscribed {
                self.setting(setting, "commercial_subscribed".to_owned())?;
            }
        }
        if self.target.override_preferences {
            return Ok(());
        }

        let categories = self.target.categories;
        for (index, category) in categories.iter().enumerate() {
            // A category listed twice is one preference, checked once.
            if categories[..index].contains(category) {
                continue;
            }
            if let Some(setting) = entry(set.categories.as_ref(), category) {
                self.scope_setting(setting, format!("categories.{category}"))?;
            }
        }
        let workflow = self.target.workflow_key;
        if let Some(setting) = entry(set.workflows.as_ref(), workflow) {
            self.scope_setting(setting, format!("workflows.{workflow}"))?;
        }
        self.channels(set.channels.as_ref(), set.channel_types.as_ref(), "")
    }

    fn scope_setting(&mut self, setting: &ScopeSetting, path: String) -> Outcome {
        match setting {
            ScopeSetting::Enabled(enabled) => self.pass_if(*enabled, path),
            ScopeSetting::Object(object) => {
                if let Some(conditions) = &object.conditions {
                    self.conditions(conditions, format!("{path}.conditions"))?;
                }
                self.channels(
                    object.channels.as_ref(),
                    object.channel_types.as_ref(),
                    &format!("{path}."),
                )
            }
        }
    }

    /// The channel preference for the target within one scope: its `channels` entry if it
    /// has one, else its `channel_types` entry, else nothing applies.
    fn channels(
        &mut self,
        channels: Option<&ChannelSettings>,
        channel_types: Option<&ChannelSettings>,
        prefix: &str,
    ) -> Outcome {
        let channel_id = self.target.channel_id;
        if let Some(setting) = entry(channels, channel_id) {
            return self.setting(setting, format!("{prefix}channels.{channel_id}"));
        }
        let channel_type = self.target.channel_type;
        if let Some(setting) = entry(channel_types, channel_type) {
            return self.setting(setting, format!("{prefix}channel_types.{channel_type}"));
        }
        Ok(())
    }

    fn setting(&mut self, setting: &Setting, path: String) -> Outcome {
        match setting {
            Setting::Enabled(enabled) => self.pass_if(*enabled, path),
            Setting::Conditions(conditions) => {
                self.conditions(conditions, format!("{path}.conditions"))
            }
        }
    }

    /// Every condition must hold (Knock has no OR for preference conditions). All of them
    /// are evaluated so the run log shows each result.
    fn conditions(&mut self, conditions: &[Condition], path: String) -> Outcome {
        let evaluation = ConditionGroup::All(conditions.to_vec()).evaluate(self.scope, self.now);
        let passed = evaluation.passed;
        self.conditions.push(evaluation);
        self.pass_if(passed, path)
    }

    fn pass_if(&mut self, passed: bool, path: String) -> Outcome {
        if passed {
            self.passed.push(path);
            Ok(())
        } else {
            Err(path)
        }
    }
}

fn entry<'s, T>(map: Option<&'s SettingMap<T>>, key: &str) -> Option<&'s T> {
    map.and_then(|map| map.get(key))
}
