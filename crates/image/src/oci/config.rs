//! The image config: the platform check, and `Env`, `WorkingDir` and `User` as exec defaults.

use std::path::Path;

use serde::Deserialize;

use crate::error::ImageError;
use crate::oci_error::OciError;
use crate::store::ExecConfig;

#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

/// Checks the platform and reads the exec defaults (`User` as written; see [`resolve_user`]).
pub(super) fn exec_config(bytes: &[u8]) -> Result<ExecConfig, ImageError> {
    let config: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| OciError::BadDocument { what: "the image config".into(), detail: e.to_string() })?;
    let platform = format!("{}/{}", config.os, config.architecture);
    if !(config.os.is_empty() || config.os == "linux")
        || !(config.architecture.is_empty() || config.architecture == "amd64")
    {
        return Err(OciError::Platform { found: platform }.into());
    }
    let run = config.config.unwrap_or_default();
    let env = run
        .env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    let mut command = run.entrypoint.unwrap_or_default();
    command.extend(run.cmd.unwrap_or_default());
    Ok(ExecConfig {
        env,
        working_dir: run.working_dir.filter(|d| !d.is_empty()),
        user: run.user.filter(|u| !u.is_empty()),
        command,
    })
}

/// Replaces `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) by `uid:gid`, looked up in the
/// tree's `/etc/passwd` and `/etc/group` (what `docker run` does inside the container).
pub(super) fn resolve_user(mut exec: ExecConfig, root: &Path) -> Result<ExecConfig, ImageError> {
    let Some(user) = exec.user.take() else { return Ok(exec) };
    let read = |file: &str| std::fs::read_to_string(root.join(file)).unwrap_or_default();
    let (passwd, group) = (read("etc/passwd"), read("etc/group"));
    let fail = |detail: String| ImageError::from(OciError::User { user: user.clone(), detail });
    let (name, group_name) = user.split_once(':').map_or((user.as_str(), None), |(u, g)| (u, Some(g)));
    // passwd: name:x:uid:gid:...; group: name:x:gid:...
    let passwd_entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && (f[0] == name || (name.parse::<u32>().is_ok() && f[2] == name)));
    let uid: u32 = match name.parse() {
        Ok(uid) => uid,
        Err(_) => passwd_entry
            .as_ref()
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| fail(format!("no user {name:?} in the image's /etc/passwd")))?,
    };
    let gid: u32 = match group_name {
        None => passwd_entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
        Some(g) => match g.parse() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| fail(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    exec.user = Some(format!("{uid}:{gid}"));
    Ok(exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_workdir_user_and_command_are_read_and_other_platforms_refused() {
        let json =
            br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/app/bin:/bin","EMPTY=","junk"],
            "WorkingDir":"/app","User":"app","Entrypoint":["/app/run"],"Cmd":["--serve"]}}"#;
        let exec = exec_config(json).unwrap();
        assert_eq!(exec.env, [("PATH".into(), "/app/bin:/bin".into()), ("EMPTY".into(), String::new())]);
        assert_eq!((exec.working_dir.as_deref(), exec.user.as_deref()), (Some("/app"), Some("app")));
        assert_eq!(exec.command, ["/app/run", "--serve"]);
        let arm = exec_config(br#"{"architecture":"arm64","os":"linux"}"#).unwrap_err();
        assert!(arm.to_string().contains("linux/arm64"), "{arm}");
        assert!(exec_config(b"not json").is_err());
    }

    #[test]
    fn users_resolve_to_uid_and_gid_in_the_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let user = |u: &str| {
            let exec = ExecConfig { user: Some(u.into()), ..Default::default() };
            resolve_user(exec, root.path()).map(|e| e.user.unwrap_or_default())
        };
        assert_eq!(user("app").unwrap(), "1000:1001");
        assert_eq!(user("1000").unwrap(), "1000:1001");
        assert_eq!(user("app:staff").unwrap(), "1000:50");
        assert_eq!(user("4242").unwrap(), "4242:0");
        assert_eq!(user("4242:7").unwrap(), "4242:7");
        assert!(user("nobody").unwrap_err().to_string().contains("/etc/passwd"));
        assert!(user("app:wheel").unwrap_err().to_string().contains("/etc/group"));
    }
}
