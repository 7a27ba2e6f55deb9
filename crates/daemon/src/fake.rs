//! An in-memory [`LeaseBackend`] with no VMs behind it: for the daemon's tests, doc examples and
//! trying the API without QEMU.
//!
//! Each shape holds `depth.high` ready "VMs"; dropping a leased one destroys it and refills at once.
//! `exec` understands a few programs: `echo ARGS..`, `cat` (stdin to stdout), `true`, `false`,
//! `exit N`, `binary` (writes non-UTF-8 bytes), `sleep MS`, `unreachable` (fails like a dead VM);
//! anything else exits 127. Each VM has an in-memory file system and runs `echo` / `warn` / `sleep`
//! as streamed processes (`fake_sandbox.rs`). A VM of a shape with `network = "nat"` "forwards"
//! ports by listening on a loopback port of its own (connections queue there, nobody answers),
//! closed when the VM is released; it records egress narrowing (see [`FakeBackend::narrowed`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use firepit_agent::{ExecRequest, ExecResult};
use firepit_shape::Depth;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::backend::{
    AcquireError, BoxFuture, EgressPolicy, ExecError, FillStrategy, LeaseBackend, LeasedVm, NetworkError,
    NetworkSpec, ShapeError, ShapeSpec, ShapeStatusView,
};
use crate::fake_sandbox::FakeSandbox;
use crate::metrics::ShapeLabel;

/// The in-memory backend (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct FakeBackend {
    state: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    shapes: Mutex<BTreeMap<String, FakeShape>>,
    refilled: Notify,
    next_id: AtomicU64,
    shut_down: std::sync::atomic::AtomicBool,
    ready_gauge: Family<ShapeLabel, Gauge>,
    narrowed: Mutex<BTreeMap<String, Vec<EgressPolicy>>>,
}

struct FakeShape {
    spec: ShapeSpec,
    ready: usize,
    leased: usize,
    destroyed: u64,
}

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
        self.lock().insert(spec.name.clone(), FakeShape { spec, ready, leased: 0, destroyed: 0 });
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

    /// Whether [`LeaseBackend::shutdown`] ran.
    pub fn is_shut_down(&self) -> bool {
        self.state.shut_down.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, FakeShape>> {
        self.state.shapes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_gauge(&self, shape: &str, ready: usize) {
        self.state.ready_gauge.get_or_create(&ShapeLabel { shape: shape.to_owned() }).set(ready as i64);
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
        Ok(Some(Box::new(FakeVm {
            id: format!("fake-{shape}-{n}"),
            shape: shape.to_owned(),
            backend: self.clone(),
            sandbox: FakeSandbox::default(),
            network,
            forwards: Mutex::default(),
        })))
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
                fill_failures: 0,
                consecutive_failures: 0,
                last_error: None,
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

    fn unregister_shape<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ShapeError>> {
        Box::pin(async move {
            self.lock().remove(name).ok_or_else(|| ShapeError::Unknown(name.to_owned()))?;
            self.state.ready_gauge.remove(&ShapeLabel { shape: name.to_owned() });
            Ok(())
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

/// A leased fake VM; dropping it destroys it and refills its shape.
struct FakeVm {
    id: String,
    shape: String,
    backend: FakeBackend,
    sandbox: FakeSandbox,
    network: NetworkSpec,
    /// Guest port and the listener standing in for QEMU's forward (closed with the VM).
    forwards: Mutex<Vec<(u16, TcpListener)>>,
}

impl Drop for FakeVm {
    fn drop(&mut self) {
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

    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecResult, ExecError>> {
        Box::pin(async move { fake_exec(request).await })
    }

    fn sandbox(&self) -> &dyn crate::sandbox::Sandbox {
        &self.sandbox
    }

    fn forward_port(&self, guest_port: u16) -> BoxFuture<'_, Result<SocketAddr, NetworkError>> {
        Box::pin(async move {
            if !self.network.is_enabled() {
                return Err(NetworkError::Disabled);
            }
            let mut forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
            let mut forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = forwards.len();
            forwards.retain(|(port, _)| *port != guest_port);
            if forwards.len() == before {
                return Err(NetworkError::NoSuchForward(guest_port));
            }
            Ok(())
        })
    }

    fn forwards(&self) -> Vec<(u16, SocketAddr)> {
        let forwards = self.forwards.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        forwards.iter().filter_map(|(port, listener)| Some((*port, listener.local_addr().ok()?))).collect()
    }

    fn narrow_egress(&self, policy: EgressPolicy) -> Result<(), NetworkError> {
        if !self.network.is_enabled() {
            return Err(NetworkError::Disabled);
        }
        let mut narrowed =
            self.backend.state.narrowed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        narrowed.entry(self.id.clone()).or_default().push(policy);
        Ok(())
    }
}

async fn fake_exec(request: ExecRequest) -> Result<ExecResult, ExecError> {
    let (program, args) =
        request.argv.split_first().ok_or_else(|| ExecError::Refused("empty argv".into()))?;
    let mut result = ExecResult { exit_code: Some(0), ..ExecResult::default() };
    match program.as_str() {
        "echo" => result.stdout = format!("{}\n", args.join(" ")).into_bytes(),
        "cat" => result.stdout = request.stdin,
        "true" => {}
        "false" => result.exit_code = Some(1),
        "exit" => result.exit_code = Some(args.first().and_then(|a| a.parse().ok()).unwrap_or(0)),
        "binary" => result.stdout = vec![0xff, 0xfe, 0x00, 0x80],
        "env" => {
            let lines: Vec<String> = request.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            result.stdout = lines.concat().into_bytes();
        }
        "sleep" => {
            let ms: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        "unreachable" => return Err(ExecError::Unreachable("fake VM does not answer".into())),
        other => {
            result.exit_code = Some(127);
            result.stderr = format!("{other}: not found\n").into_bytes();
        }
    }
    Ok(result)
}
