//! Background processes: they belong to the agent, not to a host connection.
//!
//! Each one runs in its own process group with stdin on `/dev/null`; two threads copy its stdout
//! and stderr into [`OutputRing`]s (the newest bytes only, so memory stays bounded whatever it
//! prints, and the process never blocks on output nobody reads), a third reaps it. Any connection
//! can list them, read their output by offset, wait for them and signal their group. A timeout, if
//! given, kills the group; the process is reported exited only once reaped.
//!
//! Exited processes stay listed (with their output) until [`MAX_EXITED_KEPT`] newer ones have
//! exited or the host removes them, so a client reconnecting later still finds how it ended.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use firepit_agent::{
    Channel, DEFAULT_PROCESS_OUTPUT_LIMIT, ExitStatus, Failure, FailureKind, MAX_OUTPUT_READ,
    MAX_PROCESS_OUTPUT_LIMIT, ProcessInfo, ProcessOutput, ProcessOutputRequest, ProcessRef,
    StartProcessRequest,
};

use crate::failure;
use crate::group;
use crate::ring::OutputRing;

/// Longest wait, after a background process exited, for the rest of its output (a child it left
/// behind may keep its pipes open).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Most background processes running at once.
pub const MAX_RUNNING: usize = 256;
/// Exited processes kept for late readers (the oldest is forgotten first).
pub const MAX_EXITED_KEPT: usize = 64;

struct Entry {
    tag: Option<String>,
    pid: u32,
    argv: Vec<String>,
    started_unix_ms: i64,
    exit: Option<ExitStatus>,
    timed_out: bool,
    outputs: [OutputRing; 2],
}

impl Entry {
    fn info(&self, id: u64) -> ProcessInfo {
        ProcessInfo {
            id,
            tag: self.tag.clone(),
            pid: self.pid,
            argv: self.argv.clone(),
            started_unix_ms: self.started_unix_ms,
            exit: self.exit,
            stdout_bytes: self.outputs[0].end(),
            stderr_bytes: self.outputs[1].end(),
        }
    }
}

#[derive(Default)]
struct Table {
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
}

impl Table {
    fn find(&self, process: &ProcessRef) -> Result<u64, Failure> {
        let found = match process {
            ProcessRef::Id(id) => self.entries.contains_key(id).then_some(*id),
            ProcessRef::Tag(tag) => self
                .entries
                .iter()
                .rev()
                .find(|(_, e)| e.tag.as_deref() == Some(tag.as_str()))
                .map(|(id, _)| *id),
        };
        found.ok_or_else(|| {
            Failure::new(FailureKind::NoSuchProcess, format!("no background process {process:?}"))
        })
    }

    /// Forgets the oldest exited processes beyond [`MAX_EXITED_KEPT`].
    fn prune(&mut self) {
        let exited: Vec<u64> =
            self.entries.iter().filter(|(_, e)| e.exit.is_some()).map(|(id, _)| *id).collect();
        for id in exited.iter().take(exited.len().saturating_sub(MAX_EXITED_KEPT)) {
            self.entries.remove(id);
        }
    }
}

/// The agent's background processes (one table for the agent's whole life), and the one-shot
/// execs running now.
#[derive(Default)]
pub struct ProcessTable {
    table: Mutex<Table>,
    changed: Condvar,
    /// One-shot execs running now.
    pub(crate) execs: crate::exec::Running,
}

impl ProcessTable {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits (at most `timeout`) until `done` holds for the table; returns the guard.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&Table) -> bool) -> MutexGuard<'_, Table> {
        let deadline = Instant::now() + timeout;
        let mut table = self.lock();
        while !done(&table) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            table = match self.changed.wait_timeout(table, deadline - now) {
                Ok((table, _)) => table,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        table
    }

    /// Starts a background process.
    pub fn start(self: &Arc<Self>, request: &StartProcessRequest) -> Result<ProcessInfo, Failure> {
        let limit = match request.output_limit_bytes {
            0 => DEFAULT_PROCESS_OUTPUT_LIMIT,
            n if n > MAX_PROCESS_OUTPUT_LIMIT => {
                return Err(failure::invalid(format!(
                    "output_limit_bytes {n} exceeds the maximum of {MAX_PROCESS_OUTPUT_LIMIT}"
                )));
            }
            n => n,
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut command =
            group::command(&request.argv, &request.env, request.cwd.as_deref(), request.user.as_deref())?;
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut table = self.lock();
        let running = table.entries.values().filter(|e| e.exit.is_none()).count();
        if running >= MAX_RUNNING {
            return Err(Failure::new(
                FailureKind::LimitReached,
                format!("{MAX_RUNNING} background processes run"),
            ));
        }
        if let Some(tag) = &request.tag
            && table.entries.values().any(|e| e.exit.is_none() && e.tag.as_ref() == Some(tag))
        {
            return Err(Failure::new(
                FailureKind::AlreadyExists,
                format!("a process tagged {tag:?} is running"),
            ));
        }
        let mut child = command.spawn().map_err(|e| group::spawn_failure(&command, &e))?;
        let started = Instant::now();
        table.next_id += 1;
        let id = table.next_id;
        let entry = Entry {
            tag: request.tag.clone(),
            pid: child.id(),
            argv: request.argv.clone(),
            started_unix_ms: group::unix_ms(),
            exit: None,
            timed_out: false,
            outputs: [OutputRing::new(limit), OutputRing::new(limit)],
        };
        let info = entry.info(id);
        table.entries.insert(id, entry);
        drop(table);

        let pipes = [
            (Channel::Stdout, child.stdout.take().map(OwnedFd::from)),
            (Channel::Stderr, child.stderr.take().map(OwnedFd::from)),
        ];
        let mut collectors = Vec::new();
        for (channel, fd) in pipes {
            if let Some(fd) = fd {
                let table = self.clone();
                collectors.push(thread::spawn(move || table.collect(id, channel, File::from(fd))));
            }
        }
        let table = self.clone();
        let pid = info.pid;
        thread::spawn(move || {
            // Made before the table is locked: finding out about an OOM kill may wait a little.
            let exit = match child.wait() {
                Ok(status) => group::exit_status(pid, status, false, started),
                Err(_) => ExitStatus::default(),
            };
            // Reported exited once its output is all read (both pipes at their end), so a waiter
            // reads it whole; a child it left behind may hold them open: not waited on past
            // OUTPUT_GRACE.
            let deadline = Instant::now() + OUTPUT_GRACE;
            while collectors.iter().any(|c| !c.is_finished()) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(2));
            }
            let mut entries = table.lock();
            if let Some(entry) = entries.entries.get_mut(&id) {
                entry.exit = Some(ExitStatus { timed_out: entry.timed_out, ..exit });
            }
            entries.prune();
            drop(entries);
            table.changed.notify_all();
        });
        if request.timeout_ms > 0 {
            let (table, timeout, pid) = (self.clone(), Duration::from_millis(request.timeout_ms), info.pid);
            thread::spawn(move || {
                let alive = |t: &Table| t.entries.get(&id).is_some_and(|e| e.exit.is_none());
                let mut entries = table.wait_until(timeout, |t| !alive(t));
                if alive(&entries) {
                    if let Some(entry) = entries.entries.get_mut(&id) {
                        entry.timed_out = true;
                    }
                    group::kill(pid);
                }
            });
        }
        Ok(info)
    }

    /// Copies one output of process `id` into its ring until end-of-file.
    fn collect(&self, id: u64, channel: Channel, mut source: File) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if let Some(entry) = self.lock().entries.get_mut(&id) {
                let ring = &mut entry.outputs[channel.index()];
                if n == 0 { ring.close() } else { ring.push(&buf[..n]) }
            }
            self.changed.notify_all();
            if n == 0 {
                return;
            }
        }
    }

    /// Every process kept, oldest first.
    pub fn list(&self) -> Vec<ProcessInfo> {
        self.lock().entries.iter().map(|(id, entry)| entry.info(*id)).collect()
    }

    /// Sends `signal` to the process group of `process`.
    pub fn signal(&self, process: &ProcessRef, signal: i32) -> Result<(), Failure> {
        let table = self.lock();
        let id = table.find(process)?;
        let pid = table.entries.get(&id).map_or(0, |e| e.pid);
        drop(table);
        group::signal(pid, signal).map_err(|error| {
            failure::io(format!("signal {signal} to process {id} (group {pid}; nothing left of it?)"), &error)
        })
    }

    /// Waits at most `timeout` for `process` to exit; its state either way.
    pub fn wait(&self, process: &ProcessRef, timeout: Duration) -> Result<ProcessInfo, Failure> {
        let id = self.lock().find(process)?;
        let table = self.wait_until(timeout, |t| t.entries.get(&id).is_none_or(|e| e.exit.is_some()));
        table.entries.get(&id).map(|e| e.info(id)).ok_or_else(|| {
            Failure::new(FailureKind::NoSuchProcess, format!("process {id} was removed while waiting"))
        })
    }

    /// Reads output as [`ProcessOutputRequest`] says (waiting up to `wait_ms` for some).
    pub fn output(&self, request: &ProcessOutputRequest) -> Result<ProcessOutput, Failure> {
        let id = self.lock().find(&request.process)?;
        let index = request.channel.index();
        let ready = |t: &Table| t.entries.get(&id).is_none_or(|e| e.outputs[index].ready(request.offset));
        let table = self.wait_until(Duration::from_millis(request.wait_ms), ready);
        let entry = table.entries.get(&id).ok_or_else(|| {
            Failure::new(FailureKind::NoSuchProcess, format!("process {id} was removed while reading"))
        })?;
        let max = match request.max_bytes {
            0 => MAX_OUTPUT_READ,
            n => n.min(MAX_OUTPUT_READ),
        };
        Ok(entry.outputs[index].read(request.offset, max as usize))
    }

    /// Kills the process group of every background process still running and of every one-shot
    /// exec running (SIGKILL). The guest's agent never needs it (its processes end with the VM);
    /// an agent serving in-process on a host calls it when its VM goes away, so nothing it started
    /// outlives it (attached processes and terminals end with their connection).
    pub fn kill_all(&self) {
        let running: Vec<u32> =
            self.lock().entries.values().filter(|e| e.exit.is_none()).map(|e| e.pid).collect();
        for pid in running {
            group::kill(pid);
        }
        self.execs.kill_all();
    }

    /// Forgets an exited process.
    pub fn remove(&self, process: &ProcessRef) -> Result<(), Failure> {
        let mut table = self.lock();
        let id = table.find(process)?;
        if table.entries.get(&id).is_some_and(|e| e.exit.is_none()) {
            return Err(failure::invalid(format!("process {id} is still running: signal it first")));
        }
        table.entries.remove(&id);
        Ok(())
    }
}
