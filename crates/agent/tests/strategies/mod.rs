//! proptest strategies for every request and response of the wire protocol.

use firepit_agent::{
    Channel, ChmodRequest, ChownRequest, Credit, DirEntry, DirListing, Done, DownloadTarRequest, ExecRequest,
    ExecResult, ExitStatus, Failure, FailureKind, FileKind, FileStat, GuestUsage, IdentityApplied,
    IdentityRequest, InputChunk, ListDirRequest, MkdirRequest, OomKill, OutputChunk, Pong, ProcessInfo,
    ProcessOutput, ProcessOutputRequest, ProcessRef, PtyRequest, ReadFileRequest, RemoveRequest,
    RenameRequest, Request, Response, SignalProcessRequest, SpawnRequest, StartProcessRequest, Started,
    StatRequest, UploadTarRequest, UsageRequest, WaitProcessRequest, WindowSize, WriteFileRequest,
};
use proptest::prelude::*;

pub fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn strings(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(any::<String>(), 0..max)
}

fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((any::<String>(), any::<String>()), 0..3)
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![Just(Channel::Stdout), Just(Channel::Stderr)]
}

fn size() -> impl Strategy<Value = WindowSize> {
    any::<(u16, u16)>().prop_map(|(rows, cols)| WindowSize { rows, cols })
}

fn process_ref() -> impl Strategy<Value = ProcessRef> {
    prop_oneof![any::<u64>().prop_map(ProcessRef::Id), any::<String>().prop_map(ProcessRef::Tag)]
}

fn exit_status() -> impl Strategy<Value = ExitStatus> {
    any::<(Option<i32>, Option<i32>, bool, u64, bool)>().prop_map(
        |(exit_code, signal, timed_out, duration_ms, oom_killed)| ExitStatus {
            exit_code,
            signal,
            timed_out,
            duration_ms,
            oom_killed,
        },
    )
}

fn file_stat() -> impl Strategy<Value = FileStat> {
    let kind = prop_oneof![
        Just(FileKind::File),
        Just(FileKind::Dir),
        Just(FileKind::Symlink),
        Just(FileKind::Other)
    ];
    (kind, any::<(u64, u32, u32, u32, i64)>(), any::<Option<String>>()).prop_map(
        |(kind, (size, mode, uid, gid, modified_unix_ms), symlink_target)| FileStat {
            kind,
            size,
            mode,
            uid,
            gid,
            modified_unix_ms,
            symlink_target,
        },
    )
}

fn failure_kind() -> impl Strategy<Value = FailureKind> {
    use FailureKind::*;
    proptest::sample::select(vec![
        NotFound,
        AlreadyExists,
        PermissionDenied,
        IsADirectory,
        NotADirectory,
        DirectoryNotEmpty,
        InvalidInput,
        NoSuchProcess,
        LimitReached,
        Protocol,
        Cancelled,
        Io,
    ])
}

fn process_info() -> impl Strategy<Value = ProcessInfo> {
    (any::<(u64, Option<String>, u32, i64, u64, u64)>(), strings(3), proptest::option::of(exit_status()))
        .prop_map(|((id, tag, pid, started_unix_ms, stdout_bytes, stderr_bytes), argv, exit)| ProcessInfo {
            id,
            tag,
            pid,
            argv,
            started_unix_ms,
            exit,
            stdout_bytes,
            stderr_bytes,
        })
}

/// Any request.
pub fn request() -> impl Strategy<Value = Request> {
    let exec = (strings(4), env(), any::<Option<String>>(), bytes(64), any::<u64>(), any::<u64>()).prop_map(
        |(argv, env, cwd, stdin, timeout_ms, max_output_bytes)| {
            Request::Exec(ExecRequest { argv, env, cwd, stdin, timeout_ms, max_output_bytes, user: None })
        },
    );
    let identity = (bytes(64), any::<Option<u128>>(), any::<Option<String>>(), any::<Option<String>>())
        .prop_map(|(entropy, unix_time_ns, hostname, machine_id)| {
            Request::SetIdentity(IdentityRequest { entropy, unix_time_ns, hostname, machine_id })
        });
    let control = prop_oneof![
        any::<u64>().prop_map(Request::Hello),
        (bytes(256), any::<bool>()).prop_map(|(bytes, eof)| Request::Input(InputChunk { bytes, eof })),
        (channel(), any::<u32>()).prop_map(|(channel, bytes)| Request::Credit(Credit { channel, bytes })),
        Just(Request::Cancel),
        size().prop_map(Request::Resize),
        any::<i32>().prop_map(Request::Signal),
    ];
    let files = prop_oneof![
        (any::<String>(), any::<bool>())
            .prop_map(|(path, follow_symlinks)| Request::Stat(StatRequest { path, follow_symlinks })),
        any::<String>().prop_map(|path| Request::ListDir(ListDirRequest { path })),
        (any::<String>(), any::<bool>(), any::<Option<u32>>())
            .prop_map(|(path, parents, mode)| Request::Mkdir(MkdirRequest { path, parents, mode })),
        (any::<String>(), any::<bool>())
            .prop_map(|(path, recursive)| Request::Remove(RemoveRequest { path, recursive })),
        (any::<String>(), any::<u32>()).prop_map(|(path, mode)| Request::Chmod(ChmodRequest { path, mode })),
        (any::<String>(), any::<Option<u32>>(), any::<Option<u32>>())
            .prop_map(|(path, uid, gid)| Request::Chown(ChownRequest { path, uid, gid })),
        (any::<String>(), any::<String>()).prop_map(|(from, to)| Request::Rename(RenameRequest { from, to })),
        (any::<String>(), any::<Option<u32>>(), any::<(bool, bool)>()).prop_map(
            |(path, mode, (create_parents, append))| {
                Request::WriteFile(WriteFileRequest { path, mode, create_parents, append })
            }
        ),
        (any::<String>(), any::<u64>(), any::<Option<u64>>())
            .prop_map(|(path, offset, limit)| Request::ReadFile(ReadFileRequest { path, offset, limit })),
        any::<String>().prop_map(|path| Request::UploadTar(UploadTarRequest { path })),
        any::<String>().prop_map(|path| Request::DownloadTar(DownloadTarRequest { path })),
    ];
    let processes = prop_oneof![
        (strings(4), env(), any::<(Option<String>, Option<String>)>(), any::<(u64, bool)>()).prop_map(
            |(argv, env, (cwd, user), (timeout_ms, stdin))| {
                Request::Spawn(SpawnRequest { argv, env, cwd, timeout_ms, stdin, user })
            }
        ),
        (strings(3), env(), any::<(Option<String>, Option<String>)>(), size()).prop_map(
            |(argv, env, (cwd, user), size)| Request::Pty(PtyRequest { argv, env, cwd, size, user })
        ),
        (strings(3), env(), any::<(Option<String>, Option<String>, Option<String>)>(), any::<(u64, u64)>())
            .prop_map(|(argv, env, (cwd, tag, user), (timeout_ms, output_limit_bytes))| {
                Request::StartProcess(StartProcessRequest {
                    argv,
                    env,
                    cwd,
                    tag,
                    timeout_ms,
                    output_limit_bytes,
                    user,
                })
            }),
        Just(Request::ListProcesses),
        (process_ref(), any::<i32>())
            .prop_map(|(process, signal)| Request::SignalProcess(SignalProcessRequest { process, signal })),
        (process_ref(), any::<u64>()).prop_map(|(process, timeout_ms)| Request::WaitProcess(
            WaitProcessRequest { process, timeout_ms }
        )),
        (process_ref(), channel(), any::<(u64, u32, u64)>()).prop_map(
            |(process, channel, (offset, max_bytes, wait_ms))| {
                Request::ProcessOutput(ProcessOutputRequest { process, channel, offset, max_bytes, wait_ms })
            }
        ),
        process_ref().prop_map(Request::RemoveProcess),
    ];
    let usage = any::<u64>().prop_map(|oom_kills_after| Request::Usage(UsageRequest { oom_kills_after }));
    prop_oneof![Just(Request::Ping), exec, identity, control, files, processes, usage]
}

/// Any response.
pub fn response() -> impl Strategy<Value = Response> {
    let exec =
        (any::<Option<i32>>(), any::<Option<i32>>(), bytes(64), bytes(64), any::<(bool, bool, u64, bool)>())
            .prop_map(
                |(exit_code, signal, stdout, stderr, (truncated, timed_out, duration_ms, oom_killed))| {
                    Response::Exec(ExecResult {
                        exit_code,
                        signal,
                        stdout,
                        stderr,
                        truncated,
                        timed_out,
                        duration_ms,
                        oom_killed,
                    })
                },
            );
    let classic = prop_oneof![
        (any::<String>(), any::<u64>())
            .prop_map(|(agent_version, uptime_ms)| Response::Pong(Pong { agent_version, uptime_ms })),
        exec,
        any::<(u32, bool, bool, bool)>().prop_map(
            |(entropy_bytes, clock_set, hostname_set, machine_id_set)| {
                Response::Identity(IdentityApplied { entropy_bytes, clock_set, hostname_set, machine_id_set })
            }
        ),
        any::<String>().prop_map(|message| Response::Error { message }),
    ];
    let streams = prop_oneof![
        any::<u64>().prop_map(Response::Hello),
        (channel(), bytes(256), any::<bool>())
            .prop_map(|(channel, bytes, eof)| Response::Output(OutputChunk { channel, bytes, eof })),
        any::<u32>().prop_map(Response::Credit),
        file_stat().prop_map(Response::Opened),
        any::<u32>().prop_map(|pid| Response::Started(Started { pid })),
        exit_status().prop_map(Response::Exited),
        any::<u64>().prop_map(|bytes| Response::Done(Done { bytes })),
        (failure_kind(), any::<String>())
            .prop_map(|(kind, message)| Response::Failed(Failure { kind, message })),
    ];
    let results = prop_oneof![
        file_stat().prop_map(Response::Stat),
        (proptest::collection::vec((any::<String>(), file_stat()), 0..3), any::<bool>()).prop_map(
            |(entries, truncated)| {
                let entries = entries.into_iter().map(|(name, stat)| DirEntry { name, stat }).collect();
                Response::Entries(DirListing { entries, truncated })
            }
        ),
        Just(Response::Ok),
        process_info().prop_map(Response::Process),
        proptest::collection::vec(process_info(), 0..3).prop_map(Response::Processes),
        (any::<(u64, u64, u64, bool)>(), bytes(128)).prop_map(
            |((offset, missed, next_offset, eof), bytes)| {
                Response::ProcessOutput(ProcessOutput { offset, bytes, missed, next_offset, eof })
            }
        ),
    ];
    prop_oneof![classic, streams, results, guest_usage().prop_map(Response::Usage)]
}

fn guest_usage() -> impl Strategy<Value = GuestUsage> {
    let kill = (any::<(u64, u32, String, Option<u32>)>(), any::<(u64, i64)>()).prop_map(
        |((seq, pid, comm, process_group), (anon_rss_kb, unix_ms))| OomKill {
            seq,
            pid,
            comm,
            process_group,
            anon_rss_kb,
            unix_ms,
        },
    );
    (any::<(u64, u64, u64, u64, u64)>(), any::<(u64, bool)>(), proptest::collection::vec(kill, 0..3))
        .prop_map(
            |(
                (
                    memory_total_bytes,
                    memory_available_bytes,
                    memory_cache_bytes,
                    disk_total_bytes,
                    disk_used_bytes,
                ),
                (oom_kills, oom_watched),
                recent_oom_kills,
            )| GuestUsage {
                memory_total_bytes,
                memory_available_bytes,
                memory_cache_bytes,
                disk_total_bytes,
                disk_used_bytes,
                oom_kills,
                recent_oom_kills,
                oom_watched,
            },
        )
}
