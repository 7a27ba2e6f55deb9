//! The facade's error: one enum over the crates it ties together.

/// What can go wrong when building or using a pool through the facade.
///
/// ```
/// let err = firepit::Error::InvalidConfig("build(0): a pool needs at least one VM".into());
/// assert!(err.to_string().contains("build(0)"));
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments cannot make a pool; the message says what to change.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// A shape description is out of range (which shape and field, what is allowed): the same
    /// error, with the same message, the daemon gives for the same shape in its config file or
    /// `PUT /v1/shapes`.
    #[error(transparent)]
    InvalidShape(#[from] firepit_shape::InvalidShape),
    /// The kernel or initramfs could not be read.
    #[error("cannot read the guest image")]
    Image(#[source] std::io::Error),
    /// Building or opening a guest image failed.
    #[error(transparent)]
    ImageBuild(#[from] firepit_image::ImageError),
    /// The engine refused or failed (warm-up, reserve, shutdown).
    #[error(transparent)]
    Pool(#[from] firepit_pool::PoolError),
    /// QEMU failed (spawn, boot, QMP, console, agent), or refused a shape's spec.
    #[error(transparent)]
    Qemu(#[from] firepit_qemu::QemuError),
    /// Sending to or reading from a VM's serial console failed.
    #[error(transparent)]
    Console(#[from] firepit_qemu::ConsoleError),
    /// A blocking step (reading the image files) panicked or was cancelled.
    #[error("a blocking task of the pool's set-up failed")]
    Task(#[source] tokio::task::JoinError),
    /// A task spawned to use a VM panicked or was cancelled (`handle.await??` in a function
    /// returning `Result<_, firepit::Error>`).
    #[error("a task using a VM failed")]
    Join(#[from] tokio::task::JoinError),
}
