//! Running a child as another user.
//!
//! A request's `user` is a name from the guest's `/etc/passwd` (`user`, `www-data`), a numeric
//! uid (`1000`), or `uid:gid` (`1000:50`). The agent runs as root; the child switches to the user
//! (supplementary groups from `/etc/group`, then gid, then uid) right before `exec`, and gets the
//! user's `HOME`, `USER`, `LOGNAME` and `SHELL` unless the request sets them. A child started as a
//! user without a working directory starts in the user's home directory when it exists.
//!
//! The files are parsed here rather than through libc's `getpwnam`: the agent is a static binary,
//! and glibc's name service switch does not work in one.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use firepit_agent::Failure;

use crate::failure;

/// Who a child runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
    /// Login name, when the user is in `/etc/passwd`.
    pub name: Option<String>,
    /// Home directory, when the user is in `/etc/passwd`.
    pub home: Option<String>,
    /// Login shell, when the user is in `/etc/passwd`.
    pub shell: Option<String>,
}

/// Resolves `spec` against the guest's `/etc/passwd` and `/etc/group`.
pub fn resolve(spec: &str) -> Result<RunAs, Failure> {
    resolve_in(Path::new("/etc"), spec)
}

/// Resolves `spec` against `etc/passwd` and `etc/group` under `etc`.
fn resolve_in(etc: &Path, spec: &str) -> Result<RunAs, Failure> {
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(etc.join("group")).unwrap_or_default();
    let (user_part, gid_part) = match spec.split_once(':') {
        Some((user, gid)) => (user, Some(gid)),
        None => (spec, None),
    };
    let entry = passwd
        .lines()
        .filter_map(PasswdEntry::parse)
        .find(|entry| entry.name == user_part || user_part.parse::<u32>().is_ok_and(|uid| uid == entry.uid));
    let uid = match (&entry, user_part.parse::<u32>()) {
        (Some(entry), _) => entry.uid,
        (None, Ok(uid)) => uid,
        (None, Err(_)) => {
            return Err(failure::invalid(format!(
                "user {user_part:?} is not in the guest's /etc/passwd (give a known name or a numeric uid)"
            )));
        }
    };
    let gid = match gid_part {
        Some(gid) => gid
            .parse::<u32>()
            .map_err(|_| failure::invalid(format!("group {gid:?} in user {spec:?} is not a numeric gid")))?,
        None => entry.as_ref().map_or(uid, |entry| entry.gid),
    };
    let mut groups = vec![gid];
    if let Some(name) = entry.as_ref().map(|entry| entry.name.as_str()) {
        for line in group.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [_, _, id, members, ..] = fields.as_slice()
                && members.split(',').any(|member| member == name)
                && let Ok(id) = id.parse::<u32>()
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    Ok(RunAs {
        uid,
        gid,
        groups,
        name: entry.as_ref().map(|entry| entry.name.clone()),
        home: entry.as_ref().map(|entry| entry.home.clone()).filter(|home| !home.is_empty()),
        shell: entry.map(|entry| entry.shell).filter(|shell| !shell.is_empty()),
    })
}

/// One line of `/etc/passwd`.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

impl PasswdEntry {
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, home, shell] = fields.as_slice() else { return None };
        Some(Self {
            name: (*name).to_owned(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: (*home).to_owned(),
            shell: (*shell).to_owned(),
        })
    }
}

impl RunAs {
    /// The working directory a child of this user starts in when the request names none: the
    /// home directory, if it exists.
    pub fn default_cwd(&self) -> Option<&str> {
        self.home.as_deref().filter(|home| Path::new(home).is_dir())
    }

    /// Makes `command` switch to this user before `exec` and gives it the user's environment
    /// (`HOME`, `USER`, `LOGNAME`, `SHELL`) where `request_env` does not set those names.
    pub fn apply(&self, command: &mut Command, request_env: &[(String, String)]) {
        let set_by_request = |name: &str| request_env.iter().any(|(key, _)| key == name);
        let mut own = Vec::new();
        if let Some(home) = &self.home {
            own.push(("HOME", home.as_str()));
        }
        if let Some(name) = &self.name {
            own.push(("USER", name.as_str()));
            own.push(("LOGNAME", name.as_str()));
        }
        if let Some(shell) = &self.shell {
            own.push(("SHELL", shell.as_str()));
        }
        for (key, value) in own {
            if !set_by_request(key) {
                command.env(key, value);
            }
        }
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: the closure only makes async-signal-safe syscalls (setgroups, setgid, setuid) in
        // the forked child; `groups` was allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
                Ok(())
            });
        }
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etc() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nbroken line\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("group"), "root:x:0:\nsudo:x:27:user\nuser:x:1000:\nadm:x:4:other\n")
            .unwrap();
        dir
    }

    #[test]
    fn a_name_resolves_to_its_ids_home_and_groups() {
        let etc = etc();
        let user = resolve_in(etc.path(), "user").unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.groups, [1000, 27]);
        assert_eq!(user.home.as_deref(), Some("/home/user"));
        assert_eq!(user.name.as_deref(), Some("user"));
        assert_eq!(user.shell.as_deref(), Some("/bin/bash"));
    }

    #[test]
    fn numbers_resolve_with_or_without_a_passwd_entry() {
        let etc = etc();
        let known = resolve_in(etc.path(), "1000").unwrap();
        assert_eq!(known.name.as_deref(), Some("user"));
        let unknown = resolve_in(etc.path(), "4242:50").unwrap();
        assert_eq!((unknown.uid, unknown.gid, unknown.name), (4242, 50, None));
        assert_eq!(unknown.groups, [50]);
    }

    #[test]
    fn an_unknown_name_or_a_bad_gid_is_refused() {
        let etc = etc();
        assert!(resolve_in(etc.path(), "nobody-here").is_err());
        assert!(resolve_in(etc.path(), "user:staff").is_err());
    }

    #[test]
    fn the_request_environment_wins_over_the_users() {
        let etc = etc();
        let user = resolve_in(etc.path(), "user").unwrap();
        let mut command = Command::new("true");
        user.apply(&mut command, &[("HOME".into(), "/tmp".into())]);
        let envs: Vec<_> =
            command.get_envs().map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned))).collect();
        assert!(!envs.iter().any(|(k, _)| k == "HOME"));
        assert!(envs.iter().any(|(k, v)| k == "USER" && v.as_deref() == Some("user".as_ref())));
    }
}
