//! What the provider reports about a shape's snapshot template: plain values for status pages.
//!
//! The snapshot machinery (`snapshot`) keeps the live state; these are the copies it hands out, so
//! a status reader never holds a lock or a template.

use std::time::Duration;

/// How a shape's ready template came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// Built by this provider (there was none).
    Built,
    /// Found valid in the template directory (made by an earlier provider) and reused.
    Reused,
    /// Built by this provider because the one found was stale or corrupt (says why).
    Rebuilt(String),
}

/// Where a `Snapshot` shape's template stands (see
/// [`QemuProvider::template_state`](crate::QemuProvider::template_state)); its `Display` is the
/// one-line status the daemon shows.
///
/// ```
/// use std::time::Duration;
/// use firepit_qemu::{TemplateOrigin, TemplateState};
/// let state = TemplateState::Failed { error: "template build failed: boot timed out".into(), retry_in: Duration::from_secs(42) };
/// assert_eq!(state.to_string(), "cold boot fallback: template build failed: boot timed out; template retried in 42 s");
/// assert_eq!(TemplateState::Ready(TemplateOrigin::Reused).to_string(), "snapshot: template reused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateState {
    /// Not built or loaded yet (the next fill does it).
    Missing,
    /// Being built or loaded (or a fill is deciding).
    Building,
    /// Fills restore clones from it.
    Ready(TemplateOrigin),
    /// Building or restoring failed: fills cold-boot until the template is tried again.
    Failed {
        /// Why the shape fell back to cold boot.
        error: String,
        /// When the next fill tries the template again.
        retry_in: Duration,
    },
}

impl std::fmt::Display for TemplateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TemplateState::Missing => f.write_str("snapshot: no template yet"),
            TemplateState::Building => f.write_str("snapshot: template being built"),
            TemplateState::Ready(TemplateOrigin::Built) => f.write_str("snapshot: template built"),
            TemplateState::Ready(TemplateOrigin::Reused) => f.write_str("snapshot: template reused"),
            TemplateState::Ready(TemplateOrigin::Rebuilt(why)) => {
                write!(f, "snapshot: template rebuilt ({why})")
            }
            TemplateState::Failed { error, retry_in } => {
                write!(f, "cold boot fallback: {error}; template retried in {} s", retry_in.as_secs())
            }
        }
    }
}
