//! A [`LeaseBackend`] with no VMs behind it: for the daemon's tests, doc examples and trying the
//! API without QEMU.
//!
//! Each shape holds `depth.high` ready "VMs"; dropping a leased one destroys it and refills at once.
//! A fake VM's guest is real code: its [`Guest`] talks to the agent's own request handling running
//! in this process (`firepit_guest::InProcessAgent`), so `exec`, files, archives, attached and
//! background processes and terminals behave as in a VM, except that they act on *this* host, as
//! the user running the tests: programs are the host's, paths are the host's (tests work in
//! temporary directories of their own), and commands start in the host's temporary directory.
//! Whatever a VM started dies with it. The agent refuses to change the host itself
//! (identity, network). [`FakeBackend::make_unreachable`] makes a VM stop answering, like a VM
//! whose QEMU died. A VM of a shape with `network = "nat"` "forwards" ports by listening on a
//! loopback port of its own (connections queue there, nobody answers), closed when the VM is
//! released; it records egress narrowing (see [`FakeBackend::narrowed`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use firepit_shape::Depth;

use crate::backend::{
    AcquireError, BoxError, BoxFuture, EgressPolicy, FillStrategy, Forks, LeaseBackend, LeasedVm,
    NetworkSpec, PauseFailed, PausedVm, SaveError, SavedSnapshot, ShapeError, ShapeSpec, ShapeStatusView,
};
pub use crate::fake_state::FakeBackend;
use crate::fake_state::{FakeShape, lock};
use crate::fake_vm::{FakePaused, FakeVm};
use crate::metrics::ShapeLabel;

impl FakeBackend {
    /// A backend with one shape of `depth` ready VMs.
    ///
    /// # Example
    /// ```
    /// use firepit_daemon::backend::LeaseBackend;
    /// let backend = firepit_daemon::fake::FakeBackend::with_shape("small", 3);
    /// assert_eq!(backend.status()[0].ready, 3);
    /// ```
    pub fn with_shape(name: &str, depth: usize) -> Self {
        let backend = Self::default();
        backend.insert(Self::spec(name, depth));
        backend
    }

    /// A valid spec for a fake shape of `depth` VMs (its image is the temp dir).
    pub fn spec(name: &str, depth: usize) -> ShapeSpec {
        ShapeSpec {
            memory_mb: 128,
            depth: Depth { low: depth, high: depth },
            fill: FillStrategy::ColdBoot,
            health_check: false,
            ..ShapeSpec::new(name, std::env::temp_dir())
        }
    }

    fn insert(&self, spec: ShapeSpec) {
        let ready = spec.depth.high;
        self.set_gauge(&spec.name, ready);
        let shape = FakeShape {
            spec,
            ready,
            leased: 0,
            paused: 0,
            destroyed: 0,
            fill_failures: 0,
            consecutive_failures: 0,
            last_error: None,
        };
        self.lock().insert(shape.spec.name.clone(), shape);
    }

    /// Adds a shape of `depth` ready VMs directly (no validation).
    pub fn insert_for_tests(&self, name: &str, depth: usize) {
        self.insert(Self::spec(name, depth));
    }

    /// Ready VMs of `shape`.
    pub fn status_ready(&self, shape: &str) -> usize {
        self.lock().get(shape).map_or(0, |s| s.ready)
    }

    /// VMs of `shape` destroyed so far (released, expired or unregistered).
    pub fn destroyed(&self, shape: &str) -> u64 {
        self.lock().get(shape).map_or(0, |s| s.destroyed)
    }

    /// VMs of `shape` currently leased.
    pub fn leased(&self, shape: &str) -> usize {
        self.lock().get(shape).map_or(0, |s| s.leased)
    }

    /// The egress narrowings applied to VM `vm_id`, in order (empty when none).
    pub fn narrowed(&self, vm_id: &str) -> Vec<EgressPolicy> {
        let narrowed = self.state.narrowed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        narrowed.get(vm_id).cloned().unwrap_or_default()
    }

    /// Makes VM `vm_id` stop answering, as a VM whose QEMU died: every guest request of it fails
    /// (the API answers `vm_unreachable`).
    pub fn make_unreachable(&self, vm_id: &str) {
        let mut unreachable =
            self.state.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unreachable.insert(vm_id.to_owned());
    }

    fn try_take(&self, shape: &str) -> Result<Option<Box<dyn LeasedVm>>, AcquireError> {
        if self.is_shut_down() {
            return Err(AcquireError::ShuttingDown);
        }
        let mut shapes = self.lock();
        let entry = shapes.get_mut(shape).ok_or_else(|| AcquireError::UnknownShape(shape.to_owned()))?;
        if entry.ready == 0 {
            return Ok(None);
        }
        entry.ready -= 1;
        entry.leased += 1;
        let ready = entry.ready;
        let network = entry.spec.network.clone();
        drop(shapes);
        self.set_gauge(shape, ready);
        let n = self.state.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Box::new(FakeVm::new(self.clone(), format!("fake-{shape}-{n}"), shape, network))))
    }

    /// Makes VM `vm_id` stop on its own, as a VM whose QEMU exited: the lease holding it ends
    /// (`vm_exited`, with `detail`).
    pub fn kill_vm(&self, vm_id: &str, detail: &str) {
        let exits = lock(&self.state.exits);
        if let Some(exit) = exits.get(vm_id) {
            exit.send_replace(Some(detail.to_owned()));
        }
    }

    /// Makes the fills of `shape` fail with `error` (`None`: succeed again), as the status the
    /// pool reports shows it (`fill_failures`, `consecutive_failures`, `last_error`).
    pub fn fail_fills(&self, shape: &str, error: Option<&str>) {
        if let Some(entry) = self.lock().get_mut(shape) {
            match error {
                Some(error) => {
                    entry.fill_failures += 1;
                    entry.consecutive_failures += 1;
                    entry.last_error = Some(error.to_owned());
                }
                None => entry.consecutive_failures = 0,
            }
        }
    }

    /// Lets [`LeaseBackend::pause`] work (a paused fake VM is kept aside in memory) or not, and
    /// with it snapshots (a file naming the shape) and forks (each takes a ready VM of the shape,
    /// or fails when none is ready).
    pub fn set_pausable(&self, pausable: bool) {
        self.state.pausable.store(pausable, Ordering::SeqCst);
    }

    /// Makes pauses, snapshots and forks fail for want of room on the host (`507
    /// insufficient_storage`), or work again; the VMs run on.
    pub fn set_no_room(&self, no_room: bool) {
        self.state.no_room.store(no_room, Ordering::SeqCst);
    }

    fn check_room(&self) -> Result<(), crate::backend::SaveError> {
        if self.state.no_room.load(Ordering::SeqCst) {
            return Err(crate::backend::SaveError::NoRoom(
                "the fake host has no room (FakeBackend::set_no_room)".into(),
            ));
        }
        Ok(())
    }

    /// VMs of `shape` paused now.
    pub fn paused(&self, shape: &str) -> usize {
        self.lock().get(shape).map_or(0, |s| s.paused)
    }
}

impl LeaseBackend for FakeBackend {
    fn acquire<'a>(
        &'a self,
        shape: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                // Register interest before checking, so a refill between the check and the wait is seen.
                let refilled = self.state.refilled.notified();
                tokio::pin!(refilled);
                refilled.as_mut().enable();
                if let Some(vm) = self.try_take(shape)? {
                    return Ok(vm);
                }
                if tokio::time::timeout_at(deadline, refilled).await.is_err() {
                    return Err(AcquireError::Exhausted {
                        shape: shape.to_owned(),
                        waited_ms: wait.as_millis() as u64,
                    });
                }
            }
        })
    }

    fn status(&self) -> Vec<ShapeStatusView> {
        self.lock()
            .values()
            .map(|s| ShapeStatusView {
                image_id: s.spec.image.display().to_string(),
                root_disk: None,
                name: s.spec.name.clone(),
                ready: s.ready,
                filling: 0,
                leased: s.leased,
                depth_low: s.spec.depth.low,
                depth_high: s.spec.depth.high,
                fill_failures: s.fill_failures,
                consecutive_failures: s.consecutive_failures,
                last_error: s.last_error.clone(),
                cpus: s.spec.cpus,
                memory_mb: s.spec.memory_mb,
                disk_mb: s.spec.disk_mb,
                accelerator: "none".to_owned(),
                fill: s.spec.fill,
                last_fill: None,
                fill_state: None,
            })
            .collect()
    }

    fn network(&self, shape: &str) -> Option<NetworkSpec> {
        self.lock().get(shape).map(|s| s.spec.network.clone())
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "firepit_pool_ready",
            "Ready VMs per shape (fake backend)",
            self.state.ready_gauge.clone(),
        );
    }

    fn register_shape<'a>(&'a self, spec: ShapeSpec) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            if self.is_shut_down() {
                return Err(ShapeError::ShuttingDown);
            }
            if self.lock().contains_key(&spec.name) {
                return Err(ShapeError::AlreadyExists(spec.name));
            }
            self.insert(spec);
            self.state.refilled.notify_waiters();
            Ok(())
        })
    }

    /// The fake's VMs carry no files: a snapshot's shape is registered like any other.
    fn register_snapshot_shape<'a>(
        &'a self,
        spec: ShapeSpec,
        dir: std::path::PathBuf,
    ) -> BoxFuture<'a, Result<(), ShapeError>> {
        let _unused = dir;
        self.register_shape(spec)
    }

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            self.lock().remove(name).ok_or_else(|| ShapeError::Unknown(name.to_owned()))?;
            self.state.ready_gauge.remove(&ShapeLabel { shape: name.to_owned() });
            Ok(())
        })
    }

    fn can_pause(&self) -> bool {
        self.state.pausable.load(Ordering::SeqCst)
    }

    fn pause(&self, vm: Box<dyn LeasedVm>) -> BoxFuture<'_, Result<Box<dyn PausedVm>, PauseFailed>> {
        Box::pin(async move {
            if !self.can_pause() {
                return Err(PauseFailed { vm, error: "pausing is off (FakeBackend::set_pausable)".into() });
            }
            if let Err(error) = self.check_room() {
                return Err(PauseFailed { vm, error: Box::new(error) });
            }
            let vm_id = vm.vm_id().to_owned();
            let shape = shape_of(&vm_id).to_owned();
            if let Some(entry) = self.lock().get_mut(&shape) {
                entry.paused += 1;
            }
            let paused = FakePaused { vm: Some(vm), vm_id, shape, backend: self.clone() };
            Ok(Box::new(paused) as Box<dyn PausedVm>)
        })
    }

    fn adopt_paused(&self, saved: &serde_json::Value) -> Result<Box<dyn PausedVm>, BoxError> {
        let vm_id = saved["vm_id"].as_str().ok_or("a fake paused VM's record names its vm_id")?.to_owned();
        let shape = saved["shape"].as_str().ok_or("a fake paused VM's record names its shape")?.to_owned();
        let mut shapes = self.lock();
        let entry =
            shapes.get_mut(&shape).ok_or_else(|| format!("no shape `{shape}` to adopt a paused VM of"))?;
        entry.paused += 1;
        drop(shapes);
        Ok(Box::new(FakePaused { vm: None, vm_id, shape, backend: self.clone() }))
    }

    fn can_snapshot(&self) -> bool {
        self.can_pause()
    }

    fn save_snapshot<'a>(
        &'a self,
        vm: &'a dyn LeasedVm,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<SavedSnapshot, SaveError>> {
        Box::pin(async move {
            self.check_room()?;
            let shape = shape_of(vm.vm_id()).to_owned();
            let bytes = serde_json::to_vec(&serde_json::json!({ "shape": shape })).unwrap_or_default();
            let written =
                std::fs::create_dir(dir).and_then(|()| std::fs::write(dir.join(FAKE_SNAPSHOT), &bytes));
            written.map_err(|e| SaveError::Failed(e.into()))?;
            Ok(SavedSnapshot { shape, size_bytes: bytes.len() as u64 })
        })
    }

    fn start_snapshot<'a>(
        &'a self,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Box<dyn LeasedVm>, AcquireError>> {
        Box::pin(async move {
            let saved =
                std::fs::read(dir.join(FAKE_SNAPSHOT)).map_err(|e| AcquireError::Backend(e.into()))?;
            let saved: serde_json::Value =
                serde_json::from_slice(&saved).map_err(|e| AcquireError::Backend(e.into()))?;
            let shape = saved["shape"].as_str().unwrap_or_default();
            self.try_take(shape)?
                .ok_or_else(|| AcquireError::Exhausted { shape: shape.to_owned(), waited_ms: 0 })
        })
    }

    fn fork<'a>(&'a self, vm: &'a dyn LeasedVm, count: usize) -> BoxFuture<'a, Result<Forks, SaveError>> {
        Box::pin(async move {
            self.check_room()?;
            let shape = shape_of(vm.vm_id());
            let fork = || -> Result<Box<dyn LeasedVm>, BoxError> {
                self.try_take(shape)?
                    .ok_or_else(|| format!("no ready VM of shape `{shape}` to fork into").into())
            };
            Ok((0..count).map(|_| fork()).collect())
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.state.shut_down.store(true, Ordering::SeqCst);
            for shape in self.lock().values_mut() {
                shape.destroyed += shape.ready as u64;
                shape.ready = 0;
            }
        })
    }
}

/// The file a fake snapshot is.
const FAKE_SNAPSHOT: &str = "fake.json";

/// The shape of a fake VM, from its id (`fake-<shape>-<n>`).
fn shape_of(vm_id: &str) -> &str {
    vm_id.strip_prefix("fake-").and_then(|rest| rest.rsplit_once('-')).map_or("", |(shape, _)| shape)
}
