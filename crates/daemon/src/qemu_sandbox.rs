//! [`Sandbox`] over a real VM: each operation is the `firepit_qemu::QemuVm` method of the same
//! name, and its errors are mapped onto [`SandboxError`] (guest failures keep their kind).
//!
//! The QEMU lease hands this out (`QemuLease::sandbox` derefs the pooled VM to its `QemuVm`).

use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{
    DirListing, FileStat, MkdirRequest, ProcessInfo, ProcessOutput, ProcessOutputRequest, ProcessRef,
    PtyRequest, SpawnRequest, StartProcessRequest, WindowSize,
};
use firepit_qemu::{AgentError, GuestInput, ProcessControl, QemuError, QemuVm};

use crate::backend::BoxFuture;
use crate::sandbox::{Attached, ByteStream, Control, Download, Input, Sandbox, SandboxError, WriteOptions};

impl From<QemuError> for SandboxError {
    fn from(error: QemuError) -> Self {
        match error {
            QemuError::Agent(AgentError::Failed { kind, message, .. }) => {
                SandboxError::Guest { kind, message }
            }
            QemuError::Agent(error @ AgentError::Remote { .. }) => SandboxError::Refused(error.into()),
            error @ QemuError::HostIo { .. } => SandboxError::Body(error.into()),
            other => SandboxError::Unreachable(other.into()),
        }
    }
}

struct QemuInput(GuestInput);

impl Input for QemuInput {
    fn write<'a>(&'a mut self, bytes: &'a [u8]) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(self.0.write_all(bytes).await?) })
    }

    fn close(&mut self) -> Result<(), SandboxError> {
        Ok(self.0.close()?)
    }
}

struct QemuControl(ProcessControl);

impl Control for QemuControl {
    fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        Ok(self.0.signal(signal)?)
    }

    fn resize(&self, size: WindowSize) -> Result<(), SandboxError> {
        Ok(self.0.resize(size)?)
    }
}

impl Sandbox for QemuVm {
    fn write_file<'a>(
        &'a self,
        path: &'a str,
        options: WriteOptions,
        data: ByteStream,
    ) -> BoxFuture<'a, Result<u64, SandboxError>> {
        let WriteOptions { mode, create_parents, append } = options;
        let options = firepit_qemu::WriteOptions { mode, create_parents, append };
        Box::pin(async move { Ok(self.write_file_with(path, data, options).await?) })
    }

    fn read_file<'a>(
        &'a self,
        path: &'a str,
        offset: u64,
        limit: Option<u64>,
    ) -> BoxFuture<'a, Result<Download, SandboxError>> {
        Box::pin(async move {
            let reader = self.read_file_range(path, offset, limit).await?;
            Ok(Download { stat: reader.stat().clone(), data: Box::pin(reader) })
        })
    }

    fn stat<'a>(&'a self, path: &'a str, follow: bool) -> BoxFuture<'a, Result<FileStat, SandboxError>> {
        Box::pin(
            async move { Ok(if follow { QemuVm::stat(self, path).await? } else { self.lstat(path).await? }) },
        )
    }

    fn list_dir<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<DirListing, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::list_dir(self, path).await?) })
    }

    fn mkdir(&self, request: MkdirRequest) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async move { Ok(self.mkdir_request(request).await?) })
    }

    fn remove<'a>(&'a self, path: &'a str, recursive: bool) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::remove(self, path, recursive).await?) })
    }

    fn chmod<'a>(&'a self, path: &'a str, mode: u32) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::chmod(self, path, mode).await?) })
    }

    fn chown<'a>(
        &'a self,
        path: &'a str,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::chown(self, path, uid, gid).await?) })
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::rename(self, from, to).await?) })
    }

    fn upload_tar<'a>(&'a self, dir: &'a str, data: ByteStream) -> BoxFuture<'a, Result<u64, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::upload_tar(self, dir, data).await?) })
    }

    fn download_tar<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Download, SandboxError>> {
        Box::pin(async move {
            let reader = QemuVm::download_tar(self, path).await?;
            Ok(Download { stat: reader.stat().clone(), data: Box::pin(reader) })
        })
    }

    fn spawn(&self, request: SpawnRequest) -> BoxFuture<'_, Result<Attached, SandboxError>> {
        Box::pin(async move {
            let mut process = QemuVm::spawn(self, request).await?;
            let (Some(stdout), Some(stderr)) = (process.take_stdout(), process.take_stderr()) else {
                return Err(SandboxError::Unreachable("a new process's outputs were taken".into()));
            };
            let stdin = process.take_stdin().map(|input| Box::new(QemuInput(input)) as Box<dyn Input>);
            Ok(Attached {
                pid: process.pid(),
                stdout: Box::pin(stdout),
                stderr: Some(Box::pin(stderr)),
                stdin,
                control: Arc::new(QemuControl(process.control())),
                exit: Box::pin(async move { Ok(process.wait().await?) }),
            })
        })
    }

    fn pty(&self, request: PtyRequest) -> BoxFuture<'_, Result<Attached, SandboxError>> {
        Box::pin(async move {
            let mut session = QemuVm::pty(self, request).await?;
            let (Some(output), Some(input)) = (session.take_output(), session.take_input()) else {
                return Err(SandboxError::Unreachable("a new terminal's ends were taken".into()));
            };
            Ok(Attached {
                pid: session.pid(),
                stdout: Box::pin(output),
                stderr: None,
                stdin: Some(Box::new(QemuInput(input))),
                control: Arc::new(QemuControl(session.control())),
                exit: Box::pin(async move { Ok(session.wait().await?) }),
            })
        })
    }

    fn start_process(
        &self,
        request: StartProcessRequest,
    ) -> BoxFuture<'_, Result<ProcessInfo, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::start_process(self, request).await?) })
    }

    fn processes(&self) -> BoxFuture<'_, Result<Vec<ProcessInfo>, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::processes(self).await?) })
    }

    fn signal_process(&self, process: ProcessRef, signal: i32) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::signal_process(self, process, signal).await?) })
    }

    fn wait_process(
        &self,
        process: ProcessRef,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ProcessInfo, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::wait_process(self, process, wait).await?) })
    }

    fn process_output(
        &self,
        request: ProcessOutputRequest,
    ) -> BoxFuture<'_, Result<ProcessOutput, SandboxError>> {
        Box::pin(async move { Ok(QemuVm::process_output(self, request).await?) })
    }

    fn remove_process(&self, process: ProcessRef) -> BoxFuture<'_, Result<(), SandboxError>> {
        Box::pin(async move { Ok(QemuVm::remove_process(self, process).await?) })
    }
}
