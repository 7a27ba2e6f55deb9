//! The identity of a VM *shape*: the name users lease by. Every VM in one bucket is interchangeable.

use std::fmt;

/// A shape's name: what makes two warm VMs interchangeable, as users name it (`small`, `default`).
///
/// The pool keeps one bucket per `ShapeKey`; a lease asks for a shape and gets any ready VM of it.
/// What a VM of the shape *is* (image, size, how it is made) is the provider's spec, registered
/// with the key ([`Provider::Spec`](crate::Provider::Spec)); nothing of it is packed into the key.
/// The key is the `shape` label of every metric.
///
/// ```
/// use firepit_pool::ShapeKey;
/// let shape = ShapeKey::new("small");
/// assert_eq!(shape.to_string(), "small");
/// assert_eq!(shape.as_str(), "small");
/// assert_eq!(ShapeKey::from("small"), shape);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ShapeKey(String);

impl ShapeKey {
    /// A shape key named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShapeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ShapeKey {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for ShapeKey {
    fn from(name: String) -> Self {
        Self(name)
    }
}
