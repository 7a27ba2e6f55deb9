//! Snapshot fill (being written): until then `FillStrategy::Snapshot` cold-boots.

use firepit_pool::ShapeKey;

use crate::config::ImagePaths;
use crate::error::QemuError;
use crate::provider::ProviderInner;
use crate::vm::QemuVm;

/// Snapshot templates per shape.
#[derive(Debug, Default)]
pub(crate) struct Templates {}

/// Makes a VM for a `Snapshot` shape.
pub(crate) async fn create_clone(
    inner: &ProviderInner,
    shape: &ShapeKey,
    paths: &ImagePaths,
) -> Result<QemuVm, QemuError> {
    inner.cold_boot(shape, paths).await
}
