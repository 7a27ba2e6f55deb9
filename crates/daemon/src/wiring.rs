//! The integration point between the daemon and the real pool: [`build_backend`] makes the QEMU
//! provider the config asks for, with the daemon's [`RecordStore`] as its ownership hook (every VM
//! it hands to the pool is recorded, every VM it destroys forgotten), and starts a [`QemuBackend`]
//! over it for the configured shapes.
//!
//! Runs after crash recovery ([`crate::recovery`]): the provider's runtime directory is
//! `<state dir>/vms`, which recovery has emptied.

use std::sync::Arc;

use firepit_qemu::{ProviderConfig, QemuError, QemuProvider};

use crate::backend::LeaseBackend;
use crate::config::Config;
use crate::qemu_backend::{PoolLimits, QemuBackend, StartError};
use crate::records::RecordStore;

/// Why the backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildBackendError {
    /// The QEMU provider could not be set up (binary, runtime dir, user).
    #[error("cannot set up the QEMU provider")]
    Provider(#[source] QemuError),
    /// The QEMU backend did not start (a shape, warm-up).
    #[error("cannot start the pools")]
    Start(#[from] StartError),
}

/// Builds the real backend for `config` (returns once every shape reached its low water mark).
///
/// The QEMU provider keeps its per-VM runtime directories under `<state dir>/vms`
/// ([`crate::recovery::vms_dir`]), so everything a run of this daemon starts lives below its own
/// state dir.
pub async fn build_backend(
    config: &Config,
    records: Arc<RecordStore>,
) -> Result<Arc<dyn LeaseBackend>, BuildBackendError> {
    let defaults = ProviderConfig::default();
    let provider_config = ProviderConfig {
        runtime_dir: crate::recovery::vms_dir(&config.state_dir()),
        template_dir: config.snapshots.template_dir.clone().unwrap_or(defaults.template_dir.clone()),
        keep_templates: config.snapshots.keep_templates,
        run_as: config.qemu_user.clone(),
        qemu_binary: config.qemu_binary.clone().unwrap_or(defaults.qemu_binary.clone()),
        cgroups: config.cgroups.clone(),
        ..defaults
    };
    let provider =
        QemuProvider::with_ownership_hook(provider_config, records).map_err(BuildBackendError::Provider)?;
    let limits = PoolLimits {
        parallel_fills: config.limits.parallel_fills,
        memory_budget_mb: config.limits.memory_budget_mb,
        shutdown_budget: config.shutdown_budget(),
    };
    let backend =
        QemuBackend::start(provider, &config.shapes, limits).await?.with_paused_dir(config.paused_dir());
    Ok(Arc::new(backend))
}
