//! How decisions behave where Portcullis and envoyproxy/ratelimit differ (the
//! defaults are Portcullis'; `settings` picks them from `--compat` and the flags).
use crate::response::HeaderStyle;
use crate::store::Counting;

/// Decision behaviour where Portcullis and envoyproxy/ratelimit differ (the defaults
/// are Portcullis'; see the crate README's compatibility table).
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Whether refused requests are counted (envoyproxy: `All`).
    pub counting: Counting,
    /// envoyproxy `SHADOW_MODE`: every refusal becomes OK (and is counted).
    pub global_shadow: bool,
    /// envoyproxy `QUOTA_MODE`: every limit is in quota mode.
    pub global_quota: bool,
    pub headers: HeaderStyle,
    /// envoyproxy `NEAR_LIMIT_RATIO`, for the `near_limit` statistic.
    pub near_limit_ratio: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            counting: Counting::Admitted,
            global_shadow: false,
            global_quota: false,
            headers: HeaderStyle::default(),
            near_limit_ratio: 0.8,
        }
    }
}
