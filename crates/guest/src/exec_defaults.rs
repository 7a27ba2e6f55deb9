//! [`ExecDefaults`]: what an image says every command in it runs with, unless the request says
//! otherwise.
//!
//! An OCI image's config carries `Env`, `WorkingDir` and `User`: `docker run` starts every process
//! with them, and so does firepit's exec on a disk imported from that image. They are applied on
//! the host, to each request before it goes to the agent, so the guest side stays unchanged.

use firepit_agent::ExecRequest;

/// Environment, working directory and user that commands in an image run with by default.
///
/// ```
/// use firepit_agent::ExecRequest;
/// use firepit_guest::ExecDefaults;
/// let defaults = ExecDefaults {
///     env: vec![("PATH".into(), "/app/bin:/usr/bin:/bin".into()), ("LANG".into(), "C.UTF-8".into())],
///     cwd: Some("/app".into()),
///     user: Some("1000:1000".into()),
/// };
/// let mut request = ExecRequest { argv: vec!["make".into()], ..Default::default() };
/// request.env.push(("LANG".into(), "de_DE.UTF-8".into()));
/// let request = defaults.applied_to(request);
/// assert_eq!(request.cwd.as_deref(), Some("/app"));
/// assert_eq!(request.user.as_deref(), Some("1000:1000"));
/// // The request's own variables win; the image's fill in the rest.
/// assert_eq!(request.env, [("PATH".into(), "/app/bin:/usr/bin:/bin".into()), ("LANG".into(), "de_DE.UTF-8".into())]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecDefaults {
    /// Environment variables set before the request's own (which win on the same name).
    pub env: Vec<(String, String)>,
    /// Working directory when the request names none.
    pub cwd: Option<String>,
    /// User (`uid[:gid]`) when the request names none.
    pub user: Option<String>,
}

impl ExecDefaults {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.cwd.is_none() && self.user.is_none()
    }

    /// `request` with the defaults filled in where it says nothing.
    pub fn applied_to(&self, mut request: ExecRequest) -> ExecRequest {
        if self.is_empty() {
            return request;
        }
        self.fill(&mut request.env, &mut request.cwd);
        if request.user.is_none() {
            request.user = self.user.clone();
        }
        request
    }

    /// The environment and working directory of an attached, background or terminal process
    /// filled in the same way (those requests carry no user: they run as the agent's).
    ///
    /// ```
    /// use firepit_guest::ExecDefaults;
    /// let defaults = ExecDefaults { env: vec![("PATH".into(), "/app/bin".into())], cwd: Some("/app".into()), user: None };
    /// let (mut env, mut cwd) = (vec![("LANG".into(), "C".into())], None);
    /// defaults.fill(&mut env, &mut cwd);
    /// assert_eq!(env, [("PATH".into(), "/app/bin".into()), ("LANG".into(), "C".into())]);
    /// assert_eq!(cwd.as_deref(), Some("/app"));
    /// ```
    pub fn fill(&self, env: &mut Vec<(String, String)>, cwd: &mut Option<String>) {
        let own = std::mem::take(env);
        let mut merged: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(name, _)| !own.iter().any(|(other, _)| other == name))
            .cloned()
            .collect();
        merged.extend(own);
        *env = merged;
        if cwd.is_none() {
            cwd.clone_from(&self.cwd);
        }
    }
}
