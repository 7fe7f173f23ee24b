//! Combining preference sets: persisting a write (`__persistence_strategy__`) and layering
//! the environment default, the tenant default and the recipient's own set at evaluation
//! time (honouring per-preference `__strategy__`).

use serde_json::Value;

use super::model::{
    KeyStrategy, PersistenceStrategy, PreferenceSet, ScopeObject, ScopeSetting, Setting, SettingMap,
};
use super::parse::parse_lenient;

/// The two ways sets are combined. Both are deep merges in which the upper set wins key by
/// key; they differ only in how `__strategy__: "replace"` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Persisting a `merge` write. `__strategy__` is stored data like any other value: it
    /// is kept unless the write sets it, as the docs say ("simply omitting the
    /// `__strategy__` from your next request will not remove it").
    Persist,
    /// Layering defaults under a recipient's set. A lower layer's `replace` preference is
    /// used whole, over the layers above it.
    Layer,
}

trait Overlay: Clone {
    /// `self` is the lower set, `upper` the one that normally wins.
    fn overlay(&self, upper: &Self, mode: Mode) -> Self;
}

fn overlay_option<T: Overlay>(lower: Option<&T>, upper: Option<&T>, mode: Mode) -> Option<T> {
    match (lower, upper) {
        (Some(lower), Some(upper)) => Some(lower.overlay(upper, mode)),
        (lower, upper) => upper.or(lower).cloned(),
    }
}

/// Which side a `replace` marker hands the whole preference to when layering, if any.
fn replaced<T: Clone>(
    lower: &T,
    lower_strategy: Option<KeyStrategy>,
    upper: &T,
    upper_strategy: Option<KeyStrategy>,
    mode: Mode,
) -> Option<T> {
    if mode != Mode::Layer {
        return None;
    }
    if lower_strategy == Some(KeyStrategy::Replace) {
        return Some(lower.clone());
    }
    // `replace` means "this value, as a whole" at whichever layer it is written, so a
    // marked tenant preference also drops the environment default's entries under it.
    if upper_strategy == Some(KeyStrategy::Replace) {
        return Some(upper.clone());
    }
    None
}

impl Overlay for Setting {
    /// A leaf: the upper value wins. Condition lists are replaced, not concatenated, since
    /// each list is one preference's value.
    fn overlay(&self, upper: &Self, _mode: Mode) -> Self {
        upper.clone()
    }
}

impl<T: Overlay> Overlay for SettingMap<T> {
    fn overlay(&self, upper: &Self, mode: Mode) -> Self {
        if let Some(whole) = replaced(self, self.strategy, upper, upper.strategy, mode) {
            return whole;
        }
        let mut entries = self.entries.clone();
        for (key, upper_entry) in &upper.entries {
            let merged = match entries.get(key) {
                Some(lower_entry) => lower_entry.overlay(upper_entry, mode),
                None => upper_entry.clone(),
            };
            entries.insert(key.clone(), merged);
        }
        SettingMap {
            strategy: upper.strategy.or(self.strategy),
            entries,
        }
    }
}

impl Overlay for ScopeObject {
    fn overlay(&self, upper: &Self, mode: Mode) -> Self {
        if let Some(whole) = replaced(self, self.strategy, upper, upper.strategy, mode) {
            return whole;
        }
        ScopeObject {
            strategy: upper.strategy.or(self.strategy),
            channel_types: overlay_option(
                self.channel_types.as_ref(),
                upper.channel_types.as_ref(),
                mode,
            ),
            channels: overlay_option(self.channels.as_ref(), upper.channels.as_ref(), mode),
            conditions: upper.conditions.clone().or_else(|| self.conditions.clone()),
        }
    }
}

impl Overlay for ScopeSetting {
    fn overlay(&self, upper: &Self, mode: Mode) -> Self {
        match (self, upper) {
            (ScopeSetting::Object(lower), ScopeSetting::Object(upper)) => {
                ScopeSetting::Object(lower.overlay(upper, mode))
            }
            // A marked tenant object beats a recipient's plain `true`/`false` too.
            (ScopeSetting::Object(lower), ScopeSetting::Enabled(_))
                if mode == Mode::Layer && lower.strategy == Some(KeyStrategy::Replace) =>
            {
                self.clone()
            }
            // Otherwise a boolean and an object don't merge: the upper value, whichever form
            // it takes, is the preference (as a JSON deep merge of mismatched types does).
            _ => upper.clone(),
        }
    }
}

impl Overlay for PreferenceSet {
    fn overlay(&self, upper: &Self, mode: Mode) -> Self {
        PreferenceSet {
            channel_types: overlay_option(
                self.channel_types.as_ref(),
                upper.channel_types.as_ref(),
                mode,
            ),
            channels: overlay_option(self.channels.as_ref(), upper.channels.as_ref(), mode),
            workflows: overlay_option(self.workflows.as_ref(), upper.workflows.as_ref(), mode),
            categories: overlay_option(self.categories.as_ref(), upper.categories.as_ref(), mode),
            commercial_subscribed: upper
                .commercial_subscribed
                .clone()
                .or_else(|| self.commercial_subscribed.clone()),
        }
    }
}

impl PreferenceSet {
    /// Applies a write to the stored set. `Replace` overwrites it; `Merge` deep-merges:
    /// keys the write leaves out (or sends as `null`) keep their stored value, nested
    /// `channel_types` / `channels` merge key by key, and leaf values (booleans, condition
    /// lists, `commercial_subscribed`) are overwritten.
    pub fn apply(&self, update: &PreferenceSet, strategy: PersistenceStrategy) -> PreferenceSet {
        match strategy {
            PersistenceStrategy::Replace => update.clone(),
            PersistenceStrategy::Merge => self.overlay(update, Mode::Persist),
        }
    }
}

/// Layers defaults under a recipient's set, lowest first: the environment default, then the
/// tenant default (a raw `tenant.settings.preference_set`, which may carry per-preference
/// `__strategy__: "replace"`), then `recipient`. Each layer wins over the ones below it key
/// by key, except that a preference marked `replace` in a lower layer is used whole.
///
/// This is the layering alone; [`PreferenceSources::resolve`] picks which of a recipient's
/// sets take part in a given run, following Knock's merge hierarchy.
pub fn resolve_effective(
    environment_default: Option<&PreferenceSet>,
    tenant_default: Option<&Value>,
    recipient: Option<&PreferenceSet>,
) -> PreferenceSet {
    // The API validates a tenant's preference set when it is written; reading leniently
    // here means data stored before a validation rule existed still counts where it can.
    let tenant = tenant_default
        .filter(|value| !value.is_null())
        .map(parse_lenient);
    let mut effective = PreferenceSet::default();
    for layer in [environment_default, tenant.as_ref(), recipient]
        .into_iter()
        .flatten()
    {
        effective = effective.overlay(layer, Mode::Layer);
    }
    effective
}

/// Every preference set that can bear on one message.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferenceSources<'a> {
    pub environment_default: Option<&'a PreferenceSet>,
    /// The run's tenant's `settings.preference_set`; `None` without a tenant.
    pub tenant_default: Option<&'a Value>,
    /// The recipient's preference set whose id is the run's tenant id; `None` without a
    /// tenant or when the recipient has none.
    pub recipient_tenant: Option<&'a PreferenceSet>,
    /// The recipient's `default` preference set.
    pub recipient_default: Option<&'a PreferenceSet>,
}

impl PreferenceSources<'_> {
    /// The effective set for one run, following Knock's merge hierarchy:
    ///
    /// - With a tenant default or a tenant-specific recipient set: recipient's tenant set,
    ///   over the tenant default, over the environment default. The recipient's `default`
    ///   set is not part of this hierarchy ("if the user does not have a tenant-specific
    ///   preference set, Knock uses the tenant's default preference set").
    /// - Otherwise (no tenant, or a tenant with neither): recipient's `default` set over the
    ///   environment default.
    ///
    /// `commercial_subscribed` is the exception: it lives on the recipient's `default` set
    /// (that is where an unsubscribe click writes it) and "takes precedence over other
    /// environment or tenant preferences", so when the `default` set has it, it is used
    /// whichever hierarchy applies.
    ///
    /// A tenant default that sets nothing (`{}`) counts as no default: otherwise an empty
    /// object saved by a tenant admin would silently set aside every recipient's `default`
    /// preferences.
    pub fn resolve(&self) -> PreferenceSet {
        let tenant_default = self
            .tenant_default
            .filter(|value| !value.is_null() && !sets_nothing(&parse_lenient(value)));
        if tenant_default.is_none() && self.recipient_tenant.is_none() {
            return resolve_effective(self.environment_default, None, self.recipient_default);
        }
        let mut effective = resolve_effective(
            self.environment_default,
            tenant_default,
            self.recipient_tenant,
        );
        if let Some(subscribed) = self
            .recipient_default
            .and_then(|set| set.commercial_subscribed.as_ref())
        {
            effective.commercial_subscribed = Some(subscribed.clone());
        }
        effective
    }
}

/// Whether a set holds no preference at all: every key unset or an empty object.
fn sets_nothing(set: &PreferenceSet) -> bool {
    fn empty<T>(map: Option<&SettingMap<T>>) -> bool {
        map.is_none_or(|map| map.entries.is_empty())
    }
    empty(set.channel_types.as_ref())
        && empty(set.channels.as_ref())
        && empty(set.workflows.as_ref())
        && empty(set.categories.as_ref())
        && set.commercial_subscribed.is_none()
}
