//! A small typed QMP client over a Unix socket.
//!
//! Why not the `qapi` crate: its types are generated from one QEMU release's schema (newer than the
//! 7.2 we run), it brings `futures`, `tower-service` and a codec stack, and we need nine commands. A
//! line-delimited JSON client with request ids is ~200 lines, speaks exactly what QEMU 7.2 accepts
//! (measured in notes/qemu.md), and is tested here against a fake QEMU peer.
//!
//! One reader task owns the read half: it routes each `return`/`error` to the waiting caller by the
//! `id` we put in every command, and records asynchronous events (`STOP`, `RESUME`, `SHUTDOWN`,
//! `MIGRATION`...) on a broadcast channel, which callers may ignore.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot};

use crate::error::QmpError;

type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>>;

/// An asynchronous QMP event (`{"event": ..., "data": ...}`).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name, e.g. `STOP`, `SHUTDOWN`.
    pub name: String,
    /// Event data (`null` when absent).
    pub data: Value,
}

/// Answer of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StatusInfo {
    /// Whether the vCPUs run.
    pub running: bool,
    /// QEMU's run state (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    pub status: String,
}

/// Answer of `query-migrate` (only the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
pub struct MigrationInfo {
    /// `none`, `setup`, `active`, `completed`, `failed`, ... (absent before any migration).
    #[serde(default)]
    pub status: Option<String>,
    /// Why it failed.
    #[serde(rename = "error-desc", default)]
    pub error_desc: Option<String>,
}

/// A connected, negotiated QMP session. Cheap to clone; commands may run concurrently.
///
/// Every [`QemuVm`](crate::QemuVm) has one ([`QemuVm::qmp`](crate::QemuVm::qmp)); the typed
/// methods cover what firepit uses, [`execute`](Self::execute) the rest.
///
/// ```no_run
/// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), firepit_qemu::QmpError> {
/// let qmp = vm.qmp();
/// let mut events = qmp.events();
/// qmp.stop().await?;
/// assert!(!qmp.query_status().await?.running);
/// println!("first event after stop: {}", events.recv().await.map(|e| e.name).unwrap_or_default());
/// let cpus = qmp.execute("query-cpus-fast", None).await?;
/// println!("{} vCPUs", cpus.as_array().map_or(0, Vec::len));
/// qmp.cont().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct QmpClient {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
    events: broadcast::Sender<QmpEvent>,
    timeout: Duration,
}

impl QmpClient {
    /// Reads QEMU's greeting, negotiates capabilities and starts the reader task.
    pub async fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        let greeting = tokio::time::timeout(timeout, reader.read_line(&mut line))
            .await
            .map_err(|_| QmpError::Timeout { command: "greeting".into(), after: timeout })??;
        if greeting == 0 {
            return Err(QmpError::Closed);
        }
        let value: Value = serde_json::from_str(&line)
            .map_err(|source| QmpError::BadGreeting { line: line.clone(), source: Some(source) })?;
        if value.get("QMP").is_none() {
            return Err(QmpError::BadGreeting { line, source: None });
        }
        let (events, _) = broadcast::channel(64);
        let client = QmpClient {
            writer: Arc::new(tokio::sync::Mutex::new(write)),
            waiters: Arc::new(Mutex::new(Some(HashMap::new()))),
            next_id: Arc::new(AtomicU64::new(1)),
            events: events.clone(),
            timeout,
        };
        tokio::spawn(read_loop(reader, client.waiters.clone(), events));
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// Subscribes to QMP events received from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs `command` with optional `arguments`, returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.execute_passing(command, arguments, None).await
    }

    /// [`execute`](Self::execute), passing `fd` along with the command (`SCM_RIGHTS`), as
    /// `getfd` wants (see `qmp_fd.rs`).
    pub(crate) async fn execute_passing(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = lock(&self.waiters);
            match waiters.as_mut() {
                Some(map) => map.insert(id, tx),
                None => return Err(QmpError::Closed),
            };
        }
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(b'\n');
        let sent = async {
            let mut writer = self.writer.lock().await;
            let passed = match fd {
                Some(fd) => crate::qmp_fd::send_with_fd(writer.as_ref(), &bytes, fd).await?,
                None => 0,
            };
            writer.write_all(&bytes[passed..]).await
        };
        let result = tokio::time::timeout(self.timeout, async {
            sent.await?;
            rx.await.unwrap_or(Err(QmpError::Closed))
        })
        .await;
        if let Some(map) = lock(&self.waiters).as_mut() {
            map.remove(&id);
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(QmpError::Command { class, desc, .. })) => {
                Err(QmpError::Command { command: command.to_string(), class, desc })
            }
            Ok(Err(QmpError::Io(e))) if is_disconnect(&e) => Err(QmpError::Closed),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QmpError::Timeout { command: command.to_string(), after: self.timeout }),
        }
    }

    /// `query-status`.
    pub async fn query_status(&self) -> Result<StatusInfo, QmpError> {
        let value = self.execute("query-status", None).await?;
        serde_json::from_value(value).map_err(|source| QmpError::BadReply { command: "query-status", source })
    }

    /// `stop`: pause the vCPUs.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", None).await.map(drop)
    }

    /// `cont`: resume the vCPUs.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(drop)
    }

    /// `quit`: ask QEMU to exit. A connection closed by the exiting QEMU counts as success.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `migrate uri=...` (e.g. `exec:cat > FILE`); poll [`query_migrate`](Self::query_migrate).
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", Some(json!({ "uri": uri }))).await.map(drop)
    }

    /// `migrate-incoming uri=...` on a QEMU started with `-incoming defer`.
    pub async fn migrate_incoming(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri }))).await.map(drop)
    }

    /// `query-migrate`.
    pub async fn query_migrate(&self) -> Result<MigrationInfo, QmpError> {
        let value = self.execute("query-migrate", None).await?;
        serde_json::from_value(value)
            .map_err(|source| QmpError::BadReply { command: "query-migrate", source })
    }

    /// `migrate-set-capabilities` with `(name, state)` pairs, e.g. `("x-ignore-shared", true)`.
    pub async fn migrate_set_capabilities(&self, capabilities: &[(&str, bool)]) -> Result<(), QmpError> {
        let list: Vec<Value> =
            capabilities.iter().map(|(name, state)| json!({ "capability": name, "state": state })).collect();
        self.execute("migrate-set-capabilities", Some(json!({ "capabilities": list }))).await.map(drop)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map is still consistent: every operation on it is a single insert/remove.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    waiters: Waiters,
    events: broadcast::Sender<QmpEvent>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "QMP read failed");
                break;
            }
        }
        let value: Value = match serde_json::from_str(line.trim()) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!(error = %e, line = %line.trim(), "QMP sent a line that is not JSON; ignored");
                continue;
            }
        };
        if let Some(name) = value.get("event").and_then(Value::as_str) {
            let data = value.get("data").cloned().unwrap_or(Value::Null);
            tracing::debug!(event = name, %data, "QMP event");
            let _no_subscriber_is_fine = events.send(QmpEvent { name: name.to_string(), data });
            continue;
        }
        let Some(id) = value.get("id").and_then(Value::as_u64) else {
            tracing::debug!(line = %line.trim(), "QMP reply without our id; ignored");
            continue;
        };
        let outcome = if let Some(ret) = value.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = value.get("error") {
            let field = |name: &str| err.get(name).and_then(Value::as_str).unwrap_or("?").to_string();
            Err(QmpError::Command { command: String::new(), class: field("class"), desc: field("desc") })
        } else {
            Err(QmpError::NoOutcome { line: line.trim().to_string() })
        };
        let waiter = lock(&waiters).as_mut().and_then(|map| map.remove(&id));
        if let Some(waiter) = waiter {
            let _caller_may_have_timed_out = waiter.send(outcome);
        }
    }
    // Dropping the senders wakes every waiter with `Closed`; later calls fail at once.
    lock(&waiters).take();
}

/// File descriptors for `fd:` migrations (see `qmp_fd.rs` for why).
impl QmpClient {
    /// `getfd`: QEMU keeps a copy of `fd` under `name`, for an `fd:NAME` migration URI. The
    /// caller may close its own copy once this returns.
    ///
    /// ```no_run
    /// # async fn demo(vm: &firepit_qemu::QemuVm) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::os::fd::AsFd;
    /// let file = std::fs::File::create("/tmp/vm-state")?;
    /// vm.qmp().add_fd("state", file.as_fd()).await?;
    /// vm.qmp().migrate("fd:state").await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_fd(&self, name: &str, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), QmpError> {
        self.execute_passing("getfd", Some(json!({ "fdname": name })), Some(fd)).await.map(drop)
    }

    /// `migrate-set-parameters` with `parameters` (e.g. `{"max-bandwidth": ...}`).
    pub async fn migrate_set_parameters(&self, parameters: serde_json::Value) -> Result<(), QmpError> {
        self.execute("migrate-set-parameters", Some(parameters)).await.map(drop)
    }
}

#[cfg(test)]
#[path = "qmp_tests.rs"]
mod tests;
