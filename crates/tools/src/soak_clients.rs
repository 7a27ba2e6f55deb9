//! The soak's clients: each runs acquire → exec → release cycles against the daemon until the
//! soak has started its N cycles. The chaos task hands them tokens to misbehave on purpose: abort a
//! request mid-way (the connection is dropped) or run an exec that sleeps past its timeout.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use firepit_api::{AcquireRequest, ExecBody};
use firepit_client::{Client, ClientError};
use rand::Rng;
use tokio::time::Instant;

use crate::soak_daemon::SHAPE;
use crate::soak_report::{Failure, FaultKind, SoakLog};

/// A request that gets no answer within this long is a failure (the daemon hung).
const REQUEST_BOUND: Duration = Duration::from_secs(300);
/// How long an acquire waits for a ready VM.
const ACQUIRE_WAIT_MS: u64 = 90_000;
/// Lease TTL of a normal cycle.
const CYCLE_TTL_MS: u64 = 120_000;

/// State shared by the clients, the chaos task and the report.
pub struct SoakShared {
    /// The daemon's API.
    pub client: Client,
    /// Faults and failures.
    pub log: SoakLog,
    /// VM ids currently held by a client.
    pub leased: Mutex<HashSet<String>>,
    /// VM ids of leases the chaos task abandoned (held, but by nobody who will use them).
    pub abandoned: Mutex<HashSet<String>>,
    /// Pending "abort one request" tokens.
    pub drop_tokens: AtomicU32,
    /// Pending "exec past its timeout" tokens.
    pub exec_timeout_tokens: AtomicU32,
    /// Cycles started so far.
    pub cycles_started: AtomicU64,
    /// Cycles run (the last `fetch_add` of each client does not start one).
    pub cycles_run: AtomicU64,
    /// Set by the chaos task once every fault kind was injected at least once.
    pub every_kind_injected: AtomicBool,
    /// Cycles that fully succeeded.
    pub cycles_ok: AtomicU64,
    /// Mean pause of a client between two cycles (think time: without it the clients take every
    /// VM the moment it is ready and no VM is ever idle).
    pub pause: Duration,
    /// Cycles to run at least; more (up to 3×) while some fault kind was never injected.
    pub target: u64,
    /// Durations of successful cycles, seconds.
    pub cycle_secs: Mutex<Vec<f64>>,
    /// False once an expiry or exec timeout was not enforced.
    pub timeouts_enforced: AtomicBool,
}

impl SoakShared {
    /// Shared state for `target` cycles against `client`, clients pausing about `pause` between.
    pub fn new(client: Client, target: u64, pause: Duration) -> Self {
        Self {
            pause,
            client,
            log: SoakLog::default(),
            leased: Mutex::default(),
            abandoned: Mutex::default(),
            drop_tokens: AtomicU32::new(0),
            exec_timeout_tokens: AtomicU32::new(0),
            cycles_started: AtomicU64::new(0),
            cycles_run: AtomicU64::new(0),
            every_kind_injected: AtomicBool::new(false),
            cycles_ok: AtomicU64::new(0),
            target,
            cycle_secs: Mutex::default(),
            timeouts_enforced: AtomicBool::new(true),
        }
    }

    fn leased(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.leased.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a client holds `vm_id` now.
    pub fn is_leased(&self, vm_id: &str) -> bool {
        self.leased().contains(vm_id)
    }

    /// Whether `vm_id` is the VM of a lease the chaos task abandoned.
    pub fn is_abandoned(&self, vm_id: &str) -> bool {
        self.abandoned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(vm_id)
    }
}

/// The result of one request.
pub enum Sent<T> {
    /// It answered 2xx.
    Ok(T),
    /// It failed.
    Failed(ClientError),
    /// No answer within [`REQUEST_BOUND`].
    Hung,
    /// We aborted it on purpose.
    Aborted,
}

/// Sends one request, optionally aborting it after `abort_after`.
pub async fn send<T>(
    log: &SoakLog,
    abort_after: Option<Duration>,
    request: impl Future<Output = Result<T, ClientError>>,
) -> Sent<T> {
    log.request();
    let bound = abort_after.unwrap_or(REQUEST_BOUND);
    match tokio::time::timeout(bound, request).await {
        Ok(Ok(value)) => Sent::Ok(value),
        Ok(Err(error)) => Sent::Failed(error),
        Err(_) if abort_after.is_some() => Sent::Aborted,
        Err(_) => Sent::Hung,
    }
}

fn take(tokens: &AtomicU32) -> bool {
    tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
}

/// Which request of a cycle is aborted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DropStep {
    Acquire,
    Exec,
    Release,
}

/// One client: cycles until the soak has started its target and every fault kind was injected (or
/// three times the target, whichever comes first).
pub async fn client_loop(shared: std::sync::Arc<SoakShared>) {
    loop {
        let n = shared.cycles_started.fetch_add(1, Ordering::AcqRel);
        let covered = shared.every_kind_injected.load(Ordering::Acquire);
        if n >= shared.target && (covered || n >= shared.target.saturating_mul(3)) {
            break;
        }
        shared.cycles_run.fetch_add(1, Ordering::AcqRel);
        let cycle = Cycle { shared: &shared, start: Instant::now(), vm_id: None, ok: true };
        let connect_failed = cycle.run().await;
        let pause = shared.pause.mul_f64(rand::rng().random_range(0.0..2.0));
        let pause = if connect_failed { pause.max(Duration::from_millis(500)) } else { pause };
        tokio::time::sleep(pause).await;
    }
}

struct Cycle<'a> {
    shared: &'a SoakShared,
    start: Instant,
    vm_id: Option<String>,
    ok: bool,
}

impl Cycle<'_> {
    fn fail(&mut self, what: &'static str, message: String, started: Instant, after_own_drop: bool) {
        self.ok = false;
        self.shared.log.failed(Failure {
            what,
            message,
            cycle_start: self.start,
            start: started,
            end: Instant::now(),
            vm_id: self.vm_id.clone(),
            after_own_drop,
        });
    }

    fn fail_sent<T>(&mut self, what: &'static str, sent: Sent<T>, started: Instant) -> bool {
        let (message, connect) = match sent {
            Sent::Failed(error) => (error.to_string(), matches!(error, ClientError::Connect { .. })),
            Sent::Hung => (format!("no answer within {} s", REQUEST_BOUND.as_secs()), false),
            Sent::Ok(_) | Sent::Aborted => return false,
        };
        self.fail(what, message, started, false);
        connect
    }

    /// Runs the cycle; true when the daemon could not be reached (the caller backs off).
    async fn run(mut self) -> bool {
        let shared = self.shared;
        let log = &shared.log;
        let drop_step = take(&shared.drop_tokens).then(|| match rand::rng().random_range(0..3) {
            0 => DropStep::Acquire,
            1 => DropStep::Exec,
            _ => DropStep::Release,
        });
        let mut drop_fired = false;
        let exec_timeout = take(&shared.exec_timeout_tokens);

        let request = AcquireRequest {
            shape: SHAPE.into(),
            wait_ms: ACQUIRE_WAIT_MS,
            ttl_ms: Some(CYCLE_TTL_MS),
            snapshot: None,
        };
        let abort = (drop_step == Some(DropStep::Acquire))
            .then(|| Duration::from_millis(rand::rng().random_range(0..40)));
        let started = Instant::now();
        let lease = match send(log, abort, shared.client.acquire(&request, None)).await {
            Sent::Ok(lease) => lease,
            Sent::Aborted => {
                // The daemon may still hand a VM out; nobody releases it, so its TTL reclaims it.
                log.fault(FaultKind::DroppedRequest, None);
                return false;
            }
            other => return self.fail_sent("acquire", other, started),
        };
        if drop_step == Some(DropStep::Acquire) {
            shared.drop_tokens.fetch_add(1, Ordering::AcqRel); // it answered first: try again later
        }
        self.vm_id = Some(lease.vm_id.clone());
        shared.leased().insert(lease.vm_id.clone());

        let n = rand::rng().random::<u32>();
        let (argv, timeout_ms, abort) = if exec_timeout {
            log.fault(FaultKind::ExecTimeout, Some(lease.vm_id.clone()));
            (vec!["sleep".into(), "5".into()], 500, None)
        } else if drop_step == Some(DropStep::Exec) {
            let abort = Duration::from_millis(rand::rng().random_range(100..600));
            (vec!["sleep".into(), "2".into()], 0, Some(abort))
        } else {
            (vec!["sh".into(), "-c".into(), format!("echo soak-{n}")], 0, None)
        };
        let body = ExecBody { timeout_ms, ..ExecBody::new(argv) };
        let started = Instant::now();
        match send(log, abort, shared.client.exec(&lease.lease_id, &body)).await {
            Sent::Ok(out) if exec_timeout => {
                if !out.timed_out {
                    shared.timeouts_enforced.store(false, Ordering::Release);
                    self.fail("exec", format!("exec past timeout_ms not killed: {out:?}"), started, false);
                }
            }
            Sent::Ok(out) => {
                if out.exit_code != Some(0) || out.stdout != format!("soak-{n}\n") {
                    self.fail("exec", format!("unexpected exec result: {out:?}"), started, false);
                }
            }
            Sent::Aborted => {
                drop_fired = true;
                log.fault(FaultKind::DroppedRequest, Some(lease.vm_id.clone()));
            }
            other => {
                self.fail_sent("exec", other, started);
            }
        }

        let abort = (drop_step == Some(DropStep::Release))
            .then(|| Duration::from_millis(rand::rng().random_range(0..5)));
        let started = Instant::now();
        let mut connect_failed = false;
        match send(log, abort, shared.client.release(&lease.lease_id)).await {
            Sent::Ok(()) => {}
            Sent::Aborted => {
                drop_fired = true;
                log.fault(FaultKind::DroppedRequest, Some(lease.vm_id.clone()));
                let started = Instant::now();
                match send(log, None, shared.client.release(&lease.lease_id)).await {
                    Sent::Ok(()) => {}
                    Sent::Failed(ClientError::Api { status, error, message }) if status.as_u16() == 404 => {
                        self.fail("release", format!("{status} {error}: {message}"), started, true);
                    }
                    other => connect_failed = self.fail_sent("release", other, started),
                }
            }
            other => connect_failed = self.fail_sent("release", other, started),
        }
        if drop_step.is_some() && !drop_fired && drop_step != Some(DropStep::Acquire) {
            shared.drop_tokens.fetch_add(1, Ordering::AcqRel);
        }
        shared.leased().remove(&lease.vm_id);
        if self.ok {
            shared.cycles_ok.fetch_add(1, Ordering::AcqRel);
            let secs = self.start.elapsed().as_secs_f64();
            shared.cycle_secs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(secs);
        }
        connect_failed
    }
}
