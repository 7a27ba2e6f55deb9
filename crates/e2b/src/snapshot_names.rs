//! [`SnapshotNames`]: the names E2B's clients give snapshots (`create_snapshot(name=...)`), which
//! firepit's snapshots do not have. A name is a template alias: a create from it starts from the
//! newest snapshot taken under it. Kept in this process, like the sandbox records.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

/// Snapshot names, each pointing at the newest snapshot taken under it.
#[derive(Debug, Default)]
pub struct SnapshotNames {
    names: Mutex<HashMap<String, String>>,
}

impl SnapshotNames {
    /// `name` now means `snapshot_id` (a name given again moves to the newer snapshot, as E2B
    /// assigns a new build to an existing template).
    pub fn name(&self, name: &str, snapshot_id: &str) {
        lock(&self.names).insert(name.to_owned(), snapshot_id.to_owned());
    }

    /// The snapshot `template` names: a snapshot name, or a firepit snapshot id itself.
    ///
    /// ```
    /// let names = firepit_e2b::snapshot_names::SnapshotNames::default();
    /// names.name("trained", "s-00000000000000aa");
    /// assert_eq!(names.resolve("trained").as_deref(), Some("s-00000000000000aa"));
    /// assert_eq!(names.resolve("s-00000000000000bb").as_deref(), Some("s-00000000000000bb"));
    /// assert_eq!(names.resolve("base"), None);
    /// ```
    pub fn resolve(&self, template: &str) -> Option<String> {
        if let Some(id) = lock(&self.names).get(template) {
            return Some(id.clone());
        }
        is_snapshot_id(template).then(|| template.to_owned())
    }

    /// The names that point at `snapshot_id`, sorted.
    pub fn names_of(&self, snapshot_id: &str) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.names)
            .iter()
            .filter(|(_, id)| *id == snapshot_id)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Forgets every name of `snapshot_id` (it was deleted).
    pub fn forget(&self, snapshot_id: &str) {
        lock(&self.names).retain(|_, id| id != snapshot_id);
    }
}

/// Whether `text` has the form of a firepit snapshot id (`s-` and 16 hex digits).
pub fn is_snapshot_id(text: &str) -> bool {
    text.strip_prefix("s-").is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_moves_to_the_newer_snapshot_and_goes_with_its_deletion() {
        let names = SnapshotNames::default();
        names.name("app", "s-0000000000000001");
        names.name("app", "s-0000000000000002");
        names.name("other", "s-0000000000000002");
        assert_eq!(names.resolve("app").as_deref(), Some("s-0000000000000002"));
        assert!(names.names_of("s-0000000000000001").is_empty());
        assert_eq!(names.names_of("s-0000000000000002"), ["app", "other"]);
        names.forget("s-0000000000000002");
        assert_eq!(names.resolve("app"), None);
        assert!(!is_snapshot_id("s-123") && !is_snapshot_id("base"));
    }
}
