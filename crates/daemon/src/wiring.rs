//! The integration point between the daemon and the real pool: [`build_backend`] starts a
//! [`QemuBackend`] (the engine's `Pool` over the QEMU provider) for the configured shapes, with
//! every VM recorded in the daemon's state dir through its [`RecordStore`].

use std::sync::Arc;

use crate::backend::LeaseBackend;
use crate::config::Config;
use crate::qemu_backend::{QemuBackend, StartError};
use crate::records::RecordStore;

/// Why the backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildBackendError {
    /// What a previous run left under the state dir could not be removed.
    #[error("cannot clear the stale VM directory {}", dir.display())]
    StaleVmDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking start-up task (the reaper) panicked or was cancelled.
    #[error("a start-up task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The QEMU backend did not start (provider, a shape, warm-up).
    #[error("cannot start the pools")]
    Start(#[from] StartError),
}

/// Builds the real backend for `config` (returns once every shape reached its low water mark).
///
/// The QEMU provider keeps its per-VM runtime directories under `<state dir>/vms`, so everything a
/// run of this daemon starts lives below its own state dir.
pub async fn build_backend(
    config: &Config,
    records: Arc<RecordStore>,
) -> Result<Arc<dyn LeaseBackend>, BuildBackendError> {
    let vms_dir = config.state_dir().join("vms");
    // The state dir is locked by this daemon (see `RecordStore::open`) and the previous run's
    // processes are reaped by now: whatever is left under its VM directory is stale.
    if vms_dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&vms_dir)
    {
        return Err(BuildBackendError::StaleVmDir { dir: vms_dir, source: e });
    }
    let defaults = firepit_qemu::ProviderConfig::default();
    let provider_config = firepit_qemu::ProviderConfig {
        runtime_dir: vms_dir,
        template_dir: config.snapshots.template_dir.clone().unwrap_or(defaults.template_dir.clone()),
        keep_templates: config.snapshots.keep_templates,
        run_as: config.qemu_user.clone(),
        qemu_binary: config.qemu_binary.clone().unwrap_or(defaults.qemu_binary.clone()),
        ..defaults
    };
    let backend = QemuBackend::start(
        provider_config,
        config.shapes.clone(),
        config.limits.parallel_fills,
        config.limits.memory_budget_mb,
        config.shutdown_budget(),
        records,
    )
    .await?;
    Ok(Arc::new(backend))
}
