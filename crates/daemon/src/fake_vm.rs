//! The fake backend's VMs: a leased [`FakeVm`] (dropping it destroys it and refills its shape)
//! and a [`FakePaused`] one (kept aside in memory; after a restart, adopted from its record as a
//! new fake VM, since a fake VM's processes are this process's).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use firepit_guest::{ExecDefaults, Guest, InProcessAgent};
use tokio::sync::watch;

use crate::backend::{
    BoxFuture, EgressPolicy, LeasedVm, NetworkError, NetworkSpec, PausedVm, ResumeFailed, VmExit,
};
use crate::fake_state::{FakeBackend, Reachable, lock};

/// A leased fake VM; dropping it destroys it (the processes its guest started die) and refills its
/// shape.
pub(crate) struct FakeVm {
    id: String,
    shape: String,
    backend: FakeBackend,
    guest: Guest,
    network: NetworkSpec,
    /// Guest port and the listener standing in for QEMU's forward (closed with the VM).
    forwards: Mutex<Vec<(u16, TcpListener)>>,
    /// Set by [`FakeBackend::kill_vm`].
    exit: watch::Receiver<Option<String>>,
}

impl FakeVm {
    /// A new fake VM `id` of `shape` (already counted as leased).
    pub(crate) fn new(backend: FakeBackend, id: String, shape: &str, network: NetworkSpec) -> Self {
        // Commands start in the temporary directory, not in the agent's default `/` of this host.
        let defaults =
            ExecDefaults { cwd: Some(std::env::temp_dir().display().to_string()), ..ExecDefaults::default() };
        let gate = Arc::new(Reachable { state: backend.state.clone(), vm: id.clone() });
        let guest = Guest::new(InProcessAgent::new()).with_exec_defaults(defaults).with_gate(gate);
        let (tell, exit) = watch::channel(None);
        lock(&backend.state.exits).insert(id.clone(), tell);
        Self { id, shape: shape.to_owned(), backend, guest, network, forwards: Mutex::default(), exit }
    }
}

impl Drop for FakeVm {
    fn drop(&mut self) {
        lock(&self.backend.state.unreachable).remove(&self.id);
        lock(&self.backend.state.exits).remove(&self.id);
        let mut shapes = self.backend.lock();
        let Some(shape) = shapes.get_mut(&self.shape) else { return };
        shape.leased = shape.leased.saturating_sub(1);
        shape.destroyed += 1;
        if !self.backend.is_shut_down() {
            shape.ready += 1;
        }
        let ready = shape.ready;
        drop(shapes);
        self.backend.set_gauge(&self.shape, ready);
        self.backend.state.refilled.notify_waiters();
    }
}

impl LeasedVm for FakeVm {
    fn vm_id(&self) -> &str {
        &self.id
    }

    fn guest(&self) -> &Guest {
        &self.guest
    }

    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>> {
        Box::pin(async move {
            if !self.network.is_enabled() {
                return Err(NetworkError::Disabled);
            }
            let mut forwards = lock(&self.forwards);
            if let Some((_, listener)) = forwards.iter().find(|(port, _)| *port == guest_port) {
                return listener.local_addr().map_err(|e| NetworkError::Failed(e.into()));
            }
            let bound = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|listener| Ok((listener.local_addr()?, listener)));
            let (addr, listener) = bound.map_err(|e| NetworkError::Failed(e.into()))?;
            forwards.push((guest_port, listener));
            Ok(addr)
        })
    }

    fn remove_forward(&self, guest_port: u16) -> BoxFuture<'_, Result<(), NetworkError>> {
        Box::pin(async move {
            if !self.network.is_enabled() {
                return Err(NetworkError::Disabled);
            }
            let mut forwards = lock(&self.forwards);
            let before = forwards.len();
            forwards.retain(|(port, _)| *port != guest_port);
            if forwards.len() == before {
                return Err(NetworkError::NoSuchForward(guest_port));
            }
            Ok(())
        })
    }

    fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        let forwards = lock(&self.forwards);
        forwards.iter().filter_map(|(port, listener)| Some((*port, listener.local_addr().ok()?))).collect()
    }

    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError> {
        if !self.network.is_enabled() {
            return Err(NetworkError::Disabled);
        }
        lock(&self.backend.state.narrowed).entry(self.id.clone()).or_default().push(policy);
        Ok(())
    }

    fn exited(&self) -> BoxFuture<'static, VmExit> {
        let mut exit = self.exit.clone();
        Box::pin(async move {
            let detail =
                exit.wait_for(Option::is_some).await.map(|detail| detail.clone().unwrap_or_default());
            match detail {
                Ok(detail) => VmExit { detail },
                // The VM was dropped: it did not exit on its own.
                Err(_) => std::future::pending().await,
            }
        })
    }
}

/// A paused fake VM: the leased VM kept aside, or (adopted after a restart) only its id.
pub(crate) struct FakePaused {
    pub(crate) vm: Option<Box<dyn LeasedVm>>,
    pub(crate) vm_id: String,
    pub(crate) shape: String,
    pub(crate) backend: FakeBackend,
}

impl FakePaused {
    fn unpause(&self) {
        if let Some(entry) = self.backend.lock().get_mut(&self.shape) {
            entry.paused = entry.paused.saturating_sub(1);
        }
    }
}

impl PausedVm for FakePaused {
    fn vm_id(&self) -> &str {
        &self.vm_id
    }

    fn saved(&self) -> serde_json::Value {
        serde_json::json!({ "vm_id": self.vm_id, "shape": self.shape })
    }

    fn resume(mut self: Box<Self>) -> BoxFuture<'static, Result<Box<dyn LeasedVm>, ResumeFailed>> {
        Box::pin(async move {
            if self.backend.is_shut_down() {
                return Err(ResumeFailed { paused: self, error: "the fake backend is shut down".into() });
            }
            self.unpause();
            if let Some(vm) = self.vm.take() {
                return Ok(vm);
            }
            // Adopted after a restart: a new fake VM with the same id, counted as leased.
            let network = self.backend.lock().get_mut(&self.shape).map(|entry| {
                entry.leased += 1;
                entry.spec.network.clone()
            });
            let vm = FakeVm::new(
                self.backend.clone(),
                self.vm_id.clone(),
                &self.shape,
                network.unwrap_or_default(),
            );
            Ok(Box::new(vm) as Box<dyn LeasedVm>)
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.unpause();
            drop(self);
        })
    }
}
