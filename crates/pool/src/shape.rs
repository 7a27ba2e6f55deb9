//! The identity of a VM *shape*: every VM in one bucket is interchangeable.

use std::fmt;

/// What makes two warm VMs interchangeable: the guest image, its version and the machine size.
///
/// The pool keeps one bucket per `ShapeKey`; a lease asks for a shape and gets any ready VM of it.
///
/// ```
/// use firepit_pool::ShapeKey;
/// let shape = ShapeKey::new("debian-cloud", "6.1.0-28", 1, 256);
/// assert_eq!(shape.to_string(), "debian-cloud@6.1.0-28/1cpu/256MiB");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ShapeKey {
    /// Identifier of the guest image (for firepit images: the image's content hash).
    pub image_id: String,
    /// Version of the image (free text, e.g. the kernel version).
    pub version: String,
    /// Number of virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB; also what the pool charges against its memory budget.
    pub memory_mb: u32,
}

impl ShapeKey {
    /// Creates a shape key.
    pub fn new(image_id: impl Into<String>, version: impl Into<String>, vcpus: u32, memory_mb: u32) -> Self {
        Self { image_id: image_id.into(), version: version.into(), vcpus, memory_mb }
    }
}

impl fmt::Display for ShapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}/{}cpu/{}MiB", self.image_id, self.version, self.vcpus, self.memory_mb)
    }
}
