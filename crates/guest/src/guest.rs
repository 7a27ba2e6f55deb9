//! [`Guest`]: the handle every guest operation goes through, and what it needs besides the
//! channel: its deadlines ([`Timeouts`]), the image's defaults for commands ([`ExecDefaults`]),
//! and a [`Gate`] that the VM owning the channel may put in front of every request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use firepit_agent::{
    ExecRequest, IdentityApplied, IdentityRequest, NetworkApplied, NetworkConfig, Pong, Request, Response,
};

use crate::agent::AgentClient;
use crate::channel::Connector;
use crate::error::GuestError;
use crate::exec::ExecOutput;
use crate::exec_defaults::ExecDefaults;

/// How long the host waits for the guest.
///
/// ```
/// use std::time::Duration;
/// let timeouts = firepit_guest::Timeouts { request: Duration::from_secs(10), ping: Duration::from_secs(2) };
/// assert_eq!(timeouts, firepit_guest::Timeouts::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// A request's answer (an exec waits its own timeout on top; a transfer waits this long for
    /// credit before it fails).
    pub request: Duration,
    /// A ping's answer (the pool's health check).
    pub ping: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { request: Duration::from_secs(10), ping: Duration::from_secs(2) }
    }
}

/// A future the [`Gate`] asks a request to wait for.
pub type Wake = Pin<Box<dyn Future<Output = Result<(), GuestError>> + Send>>;

/// What the owner of the channel checks before each request: the channel may lead to a VM that
/// has exited (nothing will answer), or to one that rests, vCPUs stopped, in its pool (it must be
/// woken first, or nothing will answer until it is). The QEMU provider installs one; a channel
/// with nothing behind it to wake needs none.
pub trait Gate: Send + Sync + fmt::Debug + 'static {
    /// Called before every request, at once: `Err` refuses the request (say why, usually
    /// [`GuestError::Closed`]), `Ok(Some(wake))` makes it wait for `wake` first, `Ok(None)` lets it
    /// go (the common case: keep it cheap).
    fn check(&self) -> Result<Option<Wake>, GuestError>;
}

/// The guest agent's client: runs programs, moves files and archives, keeps processes and
/// terminals, sets the guest's identity and network (see the crate docs for what each does and
/// how). Cheap to clone: clones share the channel.
///
/// ```no_run
/// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
/// let out = guest.exec(["uname", "-r"]).await?;
/// assert_eq!(out.exit_code, Some(0));
/// println!("{}", out.stdout_lossy().trim());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Guest {
    pub(crate) agent: Arc<AgentClient>,
    pub(crate) timeouts: Timeouts,
    pub(crate) exec_defaults: Arc<ExecDefaults>,
    gate: Option<Arc<dyn Gate>>,
}

impl Guest {
    /// A guest reached through `connector`, with the default [`Timeouts`], no exec defaults and no
    /// gate. Nothing is connected until the first request.
    pub fn new(connector: impl Connector) -> Self {
        Self {
            agent: Arc::new(AgentClient::new(connector)),
            timeouts: Timeouts::default(),
            exec_defaults: Arc::default(),
            gate: None,
        }
    }

    /// With these deadlines.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// With the image's environment, working directory and user for every command.
    pub fn with_exec_defaults(mut self, defaults: ExecDefaults) -> Self {
        self.exec_defaults = Arc::new(defaults);
        self
    }

    /// With `gate` checked before every request. The guest it was built from (and its other
    /// clones) stays ungated: that is what the gate itself uses to wake the VM.
    pub fn with_gate(mut self, gate: Arc<dyn Gate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Its deadlines.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The image's defaults its commands run with.
    pub fn exec_defaults(&self) -> &ExecDefaults {
        &self.exec_defaults
    }

    /// Passes the gate (if any): refused, or woken, before a request goes out.
    pub(crate) async fn ready(&self) -> Result<(), GuestError> {
        let Some(gate) = &self.gate else { return Ok(()) };
        match gate.check()? {
            Some(wake) => wake.await,
            None => Ok(()),
        }
    }

    /// Sends a one-shot request through the gate and waits at most `timeout`; the guest's
    /// failures become [`GuestError::Failed`] or [`GuestError::Remote`].
    pub(crate) async fn request(&self, request: Request, timeout: Duration) -> Result<Response, GuestError> {
        self.ready().await?;
        let kind = request.kind();
        let response = self.agent.request(request, timeout).await?;
        crate::error::failure_error(kind, response)
    }

    /// Runs `argv` in the guest (no stdin, the agent's default timeout of 60 s).
    pub async fn exec<I, S>(&self, argv: I) -> Result<ExecOutput, GuestError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv = argv.into_iter().map(Into::into).collect();
        self.exec_request(ExecRequest { argv, ..Default::default() }).await
    }

    /// Runs a full [`ExecRequest`] (env, cwd, stdin, timeout, output limit), with the image's
    /// defaults filled in. The host waits the request's timeout (0: the agent's 60 s) plus
    /// [`Timeouts::request`].
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// use firepit_agent::ExecRequest;
    /// let out = guest
    ///     .exec_request(ExecRequest {
    ///         argv: vec!["sh".into(), "-c".into(), "wc -c".into()],
    ///         stdin: b"four".to_vec(),
    ///         timeout_ms: 5_000,
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// assert_eq!(out.stdout_lossy().trim(), "4");
    /// assert!(!out.timed_out);
    /// # Ok(()) }
    /// ```
    pub async fn exec_request(&self, request: ExecRequest) -> Result<ExecOutput, GuestError> {
        let guest_timeout = match request.timeout_ms {
            0 => Duration::from_secs(60),
            ms => Duration::from_millis(ms),
        };
        let deadline = guest_timeout + self.timeouts.request;
        let request = self.exec_defaults.applied_to(request);
        match self.request(Request::Exec(request), deadline).await? {
            Response::Exec(result) => Ok(ExecOutput::from(result)),
            other => Err(GuestError::unexpected("exec", other)),
        }
    }

    /// Pings the agent (deadline: [`Timeouts::ping`]).
    pub async fn ping(&self) -> Result<Pong, GuestError> {
        self.ping_timeout(self.timeouts.ping).await
    }

    /// Pings the agent with an explicit deadline.
    pub async fn ping_timeout(&self, timeout: Duration) -> Result<Pong, GuestError> {
        match self.request(Request::Ping, timeout).await? {
            Response::Pong(pong) => Ok(pong),
            other => Err(GuestError::unexpected("ping", other)),
        }
    }

    /// Gives the guest its own identity (entropy, clock, hostname, machine id); see
    /// [`fresh_identity`](crate::fresh_identity). A snapshot clone gets one before it is handed
    /// out; call it again to change the hostname, say.
    ///
    /// ```no_run
    /// # async fn demo(guest: &firepit_guest::Guest) -> Result<(), firepit_guest::GuestError> {
    /// let applied = guest.set_identity(firepit_guest::fresh_identity("build-42")).await?;
    /// assert!(applied.hostname_set && applied.clock_set);
    /// # Ok(()) }
    /// ```
    pub async fn set_identity(&self, identity: IdentityRequest) -> Result<IdentityApplied, GuestError> {
        match self.request(Request::SetIdentity(identity), self.timeouts.request).await? {
            Response::Identity(applied) => Ok(applied),
            other => Err(GuestError::unexpected("set-identity", other)),
        }
    }

    /// Brings the guest's network interface up as `config` says (MAC, address, route, DNS).
    pub async fn configure_network(&self, config: NetworkConfig) -> Result<NetworkApplied, GuestError> {
        match self.request(Request::ConfigureNetwork(config), self.timeouts.request).await? {
            Response::Network(applied) => Ok(applied),
            other => Err(GuestError::unexpected("configure-network", other)),
        }
    }

    /// Closes the connection to the agent; the next request opens a new one. Open streams
    /// (transfers, attached processes, terminals) end with [`GuestError::Closed`] and the agent
    /// cancels them; background processes live on. For clients that reconnect, and for tests of
    /// exactly that.
    pub async fn disconnect(&self) {
        self.agent.disconnect().await;
    }
}
