//! How a shape's VMs are made.

use serde::{Deserialize, Serialize};

/// How a shape's VMs are made ready.
///
/// Written `"snapshot"` or `"cold"` in config files and API bodies (`"cold_boot"` is accepted too).
///
/// ```
/// use firepit_shape::FillStrategy;
/// assert_eq!(FillStrategy::default(), FillStrategy::Snapshot);
/// assert_eq!(serde_json::from_str::<FillStrategy>("\"cold\"").unwrap(), FillStrategy::ColdBoot);
/// assert_eq!(serde_json::to_string(&FillStrategy::ColdBoot).unwrap(), "\"cold\"");
/// assert_eq!(FillStrategy::ColdBoot.to_string(), "cold");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FillStrategy {
    /// Boot the kernel for every VM (seconds under TCG).
    #[serde(rename = "cold", alias = "cold_boot")]
    ColdBoot,
    /// Boot one template VM per shape, then restore copy-on-write clones of it (≈0.1 s); cold
    /// boot is the fallback while the template cannot be built or restored.
    #[default]
    #[serde(rename = "snapshot")]
    Snapshot,
}

impl FillStrategy {
    /// The name used in config files and API bodies: `cold` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ColdBoot => "cold",
            Self::Snapshot => "snapshot",
        }
    }
}

impl std::fmt::Display for FillStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
