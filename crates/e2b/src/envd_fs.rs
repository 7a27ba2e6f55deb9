//! envd's `filesystem.Filesystem` service over firepit's file endpoints: paths resolved against
//! the user's home, entries described with owner and group names, new directories owned by the
//! user they were made for.

use axum::extract::Request;
use axum::response::Response;
use firepit_api::ErrorCode;
use firepit_api::{ChownBody, FileKind, FileStat, MkdirBody};
use firepit_client::{ClientError, ExecEvent, ExecWsOptions};

use crate::watchers::Watch;

use crate::call::Call;
use crate::connect::{Code, ConnectError};
use crate::paths;
use crate::proto::filesystem::{
    CreateWatcherRequest, CreateWatcherResponse, EntryInfo, FileType, GetWatcherEventsRequest,
    GetWatcherEventsResponse, ListDirRequest, ListDirResponse, MakeDirRequest, MakeDirResponse, MoveRequest,
    MoveResponse, RemoveRequest, RemoveResponse, RemoveWatcherRequest, RemoveWatcherResponse, StatRequest,
    StatResponse, WatchDirRequest, WatchDirResponse, watch_dir_response,
};
use crate::rpc::Rpc;
use crate::users::{User, Users};

/// Serves one call of the filesystem service.
pub async fn serve(call: Call, request: Request) -> Response {
    let rpc = match Rpc::parse(request) {
        Ok(rpc) => rpc,
        Err(response) => return *response,
    };
    match rpc.method.as_str() {
        "Stat" => rpc.unary(|r: StatRequest| async move { stat(&call, r).await }).await,
        "MakeDir" => rpc.unary(|r: MakeDirRequest| async move { make_dir(&call, r).await }).await,
        "Move" => rpc.unary(|r: MoveRequest| async move { rename(&call, r).await }).await,
        "ListDir" => rpc.unary(|r: ListDirRequest| async move { list_dir(&call, r).await }).await,
        "Remove" => rpc.unary(|r: RemoveRequest| async move { remove(&call, r).await }).await,
        "WatchDir" => rpc.server_stream(|r: WatchDirRequest| async move { watch_dir(&call, r).await }).await,
        "CreateWatcher" => {
            rpc.unary(|r: CreateWatcherRequest| async move { create_watcher(&call, r).await }).await
        }
        "GetWatcherEvents" => {
            rpc.unary(|r: GetWatcherEventsRequest| async move {
                Ok(GetWatcherEventsResponse { events: call.sandbox.watchers.take(&r.watcher_id)? })
            })
            .await
        }
        "RemoveWatcher" => {
            rpc.unary(|r: RemoveWatcherRequest| async move {
                call.sandbox.watchers.remove(&r.watcher_id)?;
                Ok(RemoveWatcherResponse {})
            })
            .await
        }
        _ => rpc.unknown_method(),
    }
}

/// A failed file call as a Connect error (the guest's failure kinds keep their meaning).
pub fn file_error(error: ClientError, path: &str) -> ConnectError {
    let code = match error.code() {
        Some(ErrorCode::NotFound) => Code::NotFound,
        Some(ErrorCode::AlreadyExists) => Code::AlreadyExists,
        Some(ErrorCode::PermissionDenied) => Code::PermissionDenied,
        Some(
            ErrorCode::IsADirectory
            | ErrorCode::NotADirectory
            | ErrorCode::DirectoryNotEmpty
            | ErrorCode::InvalidInput
            | ErrorCode::NameTooLong
            | ErrorCode::BadArchive
            | ErrorCode::ArchiveLimit
            | ErrorCode::ArchiveEntryRefused
            | ErrorCode::BadRequest,
        ) => Code::InvalidArgument,
        Some(ErrorCode::InsufficientStorage) => Code::ResourceExhausted,
        Some(ErrorCode::LeaseNotFound | ErrorCode::LeaseEnded | ErrorCode::VmUnreachable) => {
            Code::Unavailable
        }
        _ => Code::Internal,
    };
    let message = match code {
        Code::NotFound => format!("path '{path}' does not exist"),
        _ => format!("{path}: {error}"),
    };
    ConnectError::new(code, message)
}

/// `path` resolved for `user`.
pub fn resolve(path: &str, user: &User) -> Result<String, ConnectError> {
    paths::resolve(path, &user.home)
        .ok_or_else(|| ConnectError::invalid(format!("path {path:?} has a NUL byte")))
}

/// `ls -l`'s permission string of a mode, Go style (`drwxr-xr-x`, `Lrwxrwxrwx` for links).
///
/// ```
/// use firepit_api::FileKind;
/// assert_eq!(firepit_e2b::envd_fs::permissions(FileKind::File, 0o644), "-rw-r--r--");
/// assert_eq!(firepit_e2b::envd_fs::permissions(FileKind::Dir, 0o755), "drwxr-xr-x");
/// ```
pub fn permissions(kind: FileKind, mode: u32) -> String {
    let mut out = String::with_capacity(10);
    out.push(match kind {
        FileKind::Dir => 'd',
        FileKind::Symlink => 'L',
        FileKind::File | FileKind::Other => '-',
    });
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 0o7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::File,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Other => FileType::Unspecified,
    }
}

/// envd's entry for `path` whose (link-following) metadata is `stat`.
pub fn entry(path: &str, stat: &FileStat, users: &Users, symlink_target: Option<String>) -> EntryInfo {
    let millis = stat.modified_unix_ms;
    EntryInfo {
        name: paths::file_name(path).to_owned(),
        r#type: file_type(stat.kind) as i32,
        path: path.to_owned(),
        size: i64::try_from(stat.size).unwrap_or(i64::MAX),
        mode: stat.mode & 0o7777,
        permissions: permissions(stat.kind, stat.mode),
        owner: users.user_name(stat.uid),
        group: users.group_name(stat.gid),
        modified_time: Some(pbjson_types::Timestamp {
            seconds: millis.div_euclid(1000),
            nanos: i32::try_from(millis.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        symlink_target,
        metadata: Default::default(),
    }
}

/// The entry of `path` as envd describes it: a symbolic link is described by its target, with
/// the target's absolute path in `symlink_target`.
pub async fn entry_of(call: &Call, path: &str) -> Result<EntryInfo, ConnectError> {
    let client = &call.state.client;
    let id = &call.sandbox.id;
    let own = client.stat(id, path, false).await.map_err(|e| file_error(e, path))?;
    let users = call.state.users(&call.sandbox).await.map_err(|e| file_error(e, "/etc/passwd"))?;
    if own.kind != FileKind::Symlink {
        return Ok(entry(path, &own, users, None));
    }
    let target = own.symlink_target.clone().unwrap_or_default();
    let absolute = if target.starts_with('/') {
        paths::normalise(&target)
    } else {
        paths::normalise(&format!("{}/{target}", paths::parent(path).unwrap_or("/")))
    };
    // A dangling link is described as the link itself.
    let followed = client.stat(id, path, true).await.unwrap_or(own);
    Ok(entry(path, &followed, users, Some(absolute)))
}

async fn stat(call: &Call, request: StatRequest) -> Result<StatResponse, ConnectError> {
    let user = call.user(None).await?;
    let path = resolve(&request.path, &user)?;
    Ok(StatResponse { entry: Some(entry_of(call, &path).await?) })
}

/// Creates `path` and its missing parents, owned by `user`; `already_exists` when it exists.
async fn make_dir(call: &Call, request: MakeDirRequest) -> Result<MakeDirResponse, ConnectError> {
    let user = call.user(None).await?;
    let path = resolve(&request.path, &user)?;
    if let Ok(existing) = call.state.client.stat(&call.sandbox.id, &path, true).await {
        let what = if existing.kind == FileKind::Dir { "directory" } else { "file" };
        return Err(ConnectError::new(Code::AlreadyExists, format!("{what} '{path}' already exists")));
    }
    make_dirs(call, &path, &user).await?;
    Ok(MakeDirResponse { entry: Some(entry_of(call, &path).await?) })
}

/// Creates `dir` and its missing parents, each owned by `user` (like `mkdir -p` run by them).
pub async fn make_dirs(call: &Call, dir: &str, user: &User) -> Result<(), ConnectError> {
    let client = &call.state.client;
    let id = &call.sandbox.id;
    let mut missing = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        match client.stat(id, path, true).await {
            Ok(stat) if stat.kind == FileKind::Dir => break,
            Ok(_) => return Err(ConnectError::invalid(format!("path '{path}' is not a directory"))),
            Err(_) => missing.push(path.to_owned()),
        }
        current = paths::parent(path);
    }
    for path in missing.iter().rev() {
        let body = MkdirBody { path: path.clone(), parents: false, mode: Some(0o755) };
        client.mkdir(id, &body).await.map_err(|e| file_error(e, path))?;
        chown(call, path, user).await?;
    }
    Ok(())
}

/// Gives `path` to `user` (and their primary group).
pub async fn chown(call: &Call, path: &str, user: &User) -> Result<(), ConnectError> {
    let body = ChownBody { path: path.to_owned(), uid: Some(user.uid), gid: Some(user.gid) };
    call.state.client.chown(&call.sandbox.id, &body).await.map_err(|e| file_error(e, path))
}

async fn rename(call: &Call, request: MoveRequest) -> Result<MoveResponse, ConnectError> {
    let user = call.user(None).await?;
    let from = resolve(&request.source, &user)?;
    let to = resolve(&request.destination, &user)?;
    if let Some(parent) = paths::parent(&to) {
        make_dirs(call, parent, &user).await?;
    }
    call.state.client.rename(&call.sandbox.id, &from, &to).await.map_err(|e| file_error(e, &from))?;
    Ok(MoveResponse { entry: Some(entry_of(call, &to).await?) })
}

async fn list_dir(call: &Call, request: ListDirRequest) -> Result<ListDirResponse, ConnectError> {
    let user = call.user(None).await?;
    let root = resolve(&request.path, &user)?;
    let depth = request.depth.max(1);
    let client = &call.state.client;
    let id = &call.sandbox.id;
    let top = client.stat(id, &root, true).await.map_err(|e| file_error(e, &root))?;
    if top.kind != FileKind::Dir {
        return Err(ConnectError::invalid(format!("path '{root}' is not a directory")));
    }
    let users = call.state.users(&call.sandbox).await.map_err(|e| file_error(e, "/etc/passwd"))?;
    let mut entries = Vec::new();
    let mut pending = vec![(root.clone(), 1u32)];
    while let Some((dir, level)) = pending.pop() {
        let listing = client.list_dir(id, &dir).await.map_err(|e| file_error(e, &dir))?;
        for item in listing.entries {
            let path = if dir == "/" { format!("/{}", item.name) } else { format!("{dir}/{}", item.name) };
            if item.stat.kind == FileKind::Dir && level < depth {
                pending.push((path.clone(), level + 1));
            }
            let entry = if item.stat.kind == FileKind::Symlink {
                entry_of(call, &path).await?
            } else {
                entry(&path, &item.stat, users, None)
            };
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ListDirResponse { entries })
}

async fn remove(call: &Call, request: RemoveRequest) -> Result<RemoveResponse, ConnectError> {
    let user = call.user(None).await?;
    let path = resolve(&request.path, &user)?;
    match call.state.client.remove(&call.sandbox.id, &path, true).await {
        // Like `rm -rf`: a path that is not there is removed already.
        Err(error) if error.code() == Some(ErrorCode::NotFound) => Ok(RemoveResponse {}),
        Err(error) => Err(file_error(error, &path)),
        Ok(()) => Ok(RemoveResponse {}),
    }
}

/// The watched directory of a watch request: resolved for the user, existing, a directory.
async fn watched_dir(call: &Call, path: &str) -> Result<String, ConnectError> {
    let user = call.user(None).await?;
    let dir = resolve(path, &user)?;
    let stat = call.state.client.stat(&call.sandbox.id, &dir, true).await.map_err(|e| file_error(e, &dir))?;
    if stat.kind != FileKind::Dir {
        return Err(ConnectError::invalid(format!("path '{dir}' is not a directory")));
    }
    Ok(dir)
}

async fn watch_dir(
    call: &Call,
    request: WatchDirRequest,
) -> Result<impl futures_util::Stream<Item = Result<WatchDirResponse, ConnectError>> + use<>, ConnectError> {
    let dir = watched_dir(call, &request.path).await?;
    let watch = start_watch(call, &dir, request.recursive).await?;
    let start =
        WatchDirResponse { event: Some(watch_dir_response::Event::Start(watch_dir_response::StartEvent {})) };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let events = watch.next().await?;
        let responses: Vec<Result<WatchDirResponse, ConnectError>> = events
            .into_iter()
            .map(|event| Ok(WatchDirResponse { event: Some(watch_dir_response::Event::Filesystem(event)) }))
            .collect();
        Some((futures_util::stream::iter(responses), watch))
    });
    use futures_util::StreamExt;
    Ok(futures_util::stream::once(async move { Ok(start) }).chain(events.flatten()))
}

async fn create_watcher(
    call: &Call,
    request: CreateWatcherRequest,
) -> Result<CreateWatcherResponse, ConnectError> {
    let dir = watched_dir(call, &request.path).await?;
    let watch = start_watch(call, &dir, request.recursive).await?;
    Ok(CreateWatcherResponse { watcher_id: call.sandbox.watchers.keep(watch) })
}

/// What `inotifywait` reports once its watches are set up (on stderr).
const READY: &str = "Watches established.";

/// Starts watching `dir` (absolute, an existing directory) as the call's user.
pub async fn start_watch(call: &Call, dir: &str, recursive: bool) -> Result<Watch, ConnectError> {
    let mut argv: Vec<String> = ["inotifywait", "--monitor", "--no-newline", "--format", "%e %w%f%0"]
        .into_iter()
        .map(Into::into)
        .collect();
    argv.extend(["--event".into(), "create,modify,delete,moved_from,moved_to,attrib".into()]);
    if recursive {
        argv.push("--recursive".into());
    }
    argv.extend(["--".into(), dir.to_owned()]);
    let options = ExecWsOptions { user: Some(call.user_name(None)), ..ExecWsOptions::new(argv) };
    let session = call.state.client.exec_ws(&call.sandbox.id, &options).await.map_err(|error| {
        ConnectError::new(
            Code::Unimplemented,
            format!(
                "directory watching needs `inotifywait` (Debian's inotify-tools) in the sandbox: {error}"
            ),
        )
    })?;
    let (sender, mut receiver) = session.split();
    let mut stderr = String::new();
    loop {
        match receiver.next_event().await {
            Ok(Some(ExecEvent::Stderr(bytes))) => {
                stderr.push_str(&String::from_utf8_lossy(&bytes));
                if stderr.contains(READY) {
                    break;
                }
            }
            Ok(Some(ExecEvent::Started { .. } | ExecEvent::Stdout(_))) => {}
            Ok(Some(ExecEvent::Exit(_)) | None) => {
                let message = stderr.trim();
                let code =
                    if message.contains("No such file") { Code::NotFound } else { Code::InvalidArgument };
                return Err(ConnectError::new(code, format!("cannot watch '{dir}': {message}")));
            }
            Ok(Some(ExecEvent::Error { message, .. })) => {
                return Err(ConnectError::new(Code::Unavailable, message));
            }
            Err(error) => return Err(ConnectError::new(Code::Unavailable, error.to_string())),
        }
    }
    Ok(Watch::new(sender, receiver, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_names_modes_and_times() {
        let users = Users::parse("user:x:1000:1000::/home/user:/bin/bash\n", "user:x:1000:\n");
        let stat = FileStat {
            kind: FileKind::File,
            size: 4,
            mode: 0o100644,
            uid: 1000,
            gid: 1000,
            modified_unix_ms: 1_700_000_000_123,
            symlink_target: None,
        };
        let info = entry("/home/user/a.txt", &stat, &users, None);
        assert_eq!(
            (info.name.as_str(), info.mode, info.permissions.as_str()),
            ("a.txt", 0o644, "-rw-r--r--")
        );
        assert_eq!((info.owner.as_str(), info.group.as_str()), ("user", "user"));
        let time = info.modified_time.unwrap();
        assert_eq!((time.seconds, time.nanos), (1_700_000_000, 123_000_000));
        assert_eq!(info.r#type, FileType::File as i32);
    }
}
