//! `firepit cp SRC DST`: files and directories between this machine and a leased VM, streamed
//! both ways (any size, constant memory). One side is `LEASE:/absolute/path`, the other a local
//! path or `-` (stdin or stdout, for one file).
//!
//! Like `cp -r` and `docker cp`: copying onto an existing directory puts the source inside it
//! under its own name; otherwise the destination is created (a directory's *contents* go into
//! it). Files keep their permission bits; directories keep modes, times and symbolic links.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use firepit_api::{ErrorCode, FileKind, WriteFileQuery};
use firepit_client::{Client, ClientError};

use crate::CliResult;
use crate::status::ConnectArgs;

/// Arguments of `firepit cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// What to copy: a local path, `-` (stdin), or LEASE:/path in a VM.
    source: String,
    /// Where to: LEASE:/path in a VM, a local path, or `-` (stdout).
    destination: String,
}

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A path in a leased VM.
    Remote { lease: String, path: String },
    /// A local path.
    Local(PathBuf),
    /// stdin or stdout.
    Stdio,
}

impl Location {
    /// `LEASE:/path` is remote (a lease id has no `/`); `-` is stdio; the rest is local.
    fn parse(text: &str) -> Self {
        if text == "-" {
            return Location::Stdio;
        }
        match text.split_once(':') {
            Some((lease, path)) if !lease.is_empty() && !lease.contains('/') && path.starts_with('/') => {
                Location::Remote { lease: lease.to_owned(), path: path.to_owned() }
            }
            _ => Location::Local(PathBuf::from(text)),
        }
    }
}

/// The last component of a path (`/a/b/` → `b`).
fn base_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/').rsplit('/').next().filter(|name| !name.is_empty())
}

/// Runs `firepit cp`.
pub async fn run(args: CpArgs) -> CliResult {
    let client = args.connect.client()?;
    match (Location::parse(&args.source), Location::parse(&args.destination)) {
        (Location::Remote { .. }, Location::Remote { .. }) => {
            Err("both sides are in VMs: copy to this machine first, then on".into())
        }
        (Location::Remote { lease, path }, local) => download(&client, &lease, &path, local).await,
        (local, Location::Remote { lease, path }) => upload(&client, local, &lease, &path).await,
        _ => {
            Err("one side must be in a VM, as LEASE:/absolute/path (lease ids from `firepit lease acquire`)"
                .into())
        }
    }
}

/// Whether the guest path is a directory (false if it does not exist).
async fn remote_is_dir(client: &Client, lease: &str, path: &str) -> Result<bool, ClientError> {
    match client.stat(lease, path, true).await {
        Ok(stat) => Ok(stat.kind == FileKind::Dir),
        Err(error) if error.code() == Some(ErrorCode::NotFound) => Ok(false),
        Err(error) => Err(error),
    }
}

async fn upload(client: &Client, source: Location, lease: &str, path: &str) -> CliResult {
    let local = match source {
        Location::Stdio => {
            let query = WriteFileQuery { path: path.to_owned(), ..Default::default() };
            client.write_file(lease, &query, tokio::io::stdin()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Location::Local(local) => local,
        Location::Remote { .. } => return Err("both sides are in VMs".into()),
    };
    let meta = std::fs::metadata(&local).map_err(|e| format!("{}: {e}", local.display()))?;
    let name = local.file_name().map(|n| n.to_string_lossy().into_owned());
    let into_dir = path.ends_with('/') || remote_is_dir(client, lease, path).await?;
    let target = match (&name, into_dir) {
        (Some(name), true) => format!("{}/{name}", path.trim_end_matches('/')),
        _ => path.to_owned(),
    };
    if meta.is_dir() {
        client.upload_dir(lease, &local, &target).await?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = format!("{:o}", meta.permissions().mode() & 0o7777);
        let query = WriteFileQuery { path: target, mode: Some(mode), ..Default::default() };
        let file = tokio::fs::File::open(&local).await.map_err(|e| format!("{}: {e}", local.display()))?;
        client.write_file(lease, &query, file).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn download(client: &Client, lease: &str, path: &str, destination: Location) -> CliResult {
    let stat = client.stat(lease, path, true).await?;
    let local = match destination {
        Location::Stdio if stat.kind == FileKind::Dir => {
            return Err(
                format!("{lease}:{path} is a directory: give a local directory to copy it into").into()
            );
        }
        Location::Stdio => {
            let mut download = client.read_file(lease, path).await?;
            tokio::io::copy(&mut download, &mut tokio::io::stdout()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Location::Local(local) => local,
        Location::Remote { .. } => return Err("both sides are in VMs".into()),
    };
    let target = match base_name(path) {
        Some(name) if local.is_dir() => local.join(name),
        _ => local,
    };
    if stat.kind == FileKind::Dir {
        client.download_dir(lease, path, &target).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut download = client.read_file(lease, path).await?;
    let mut file =
        tokio::fs::File::create(&target).await.map_err(|e| format!("{}: {e}", target.display()))?;
    tokio::io::copy(&mut download, &mut file).await.map_err(|e| copy_error(&target, e))?;
    if let Some(mode) = download.mode() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode & 0o777))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn copy_error(target: &Path, error: std::io::Error) -> String {
    // A transfer cut part-way leaves a partial file: say so, and remove it.
    let _partial_file_may_be_gone = std::fs::remove_file(target);
    format!("copying into {} failed (partial file removed): {error}", target.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_paths_are_remote_everything_else_local() {
        let remote = Location::Remote { lease: "l-1".into(), path: "/tmp/x".into() };
        assert_eq!(Location::parse("l-1:/tmp/x"), remote);
        assert_eq!(Location::parse("./a:/b"), Location::Local("./a:/b".into()));
        assert_eq!(Location::parse("a:b"), Location::Local("a:b".into()));
        assert_eq!(Location::parse("-"), Location::Stdio);
        assert_eq!(base_name("/a/b/"), Some("b"));
        assert_eq!(base_name("/"), None);
    }
}
