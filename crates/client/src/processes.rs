//! Streamed exec and background processes.

use firepit_api::{
    OutputChannel, OutputQuery, ProcessList, ProcessOutputView, ProcessQuery, ProcessView, SignalBody,
    SignalSpec, SpawnBody, StartProcessBody,
};
use hyper::Method;

use crate::body;
use crate::events::EventStream;
use crate::files::{lease_path, segment};
use crate::{Client, ClientError, to_json};

impl Client {
    /// `POST /v1/leases/{id}/exec/stream`: runs a command and returns its events as they come
    /// (`started`, `stdout`/`stderr` chunks, `exit`). Dropping the stream before the exit kills
    /// the command.
    pub async fn exec_stream(&self, lease_id: &str, body: &SpawnBody) -> Result<EventStream, ClientError> {
        let path = lease_path(lease_id, "exec/stream", &())?;
        let response =
            self.send(Method::POST, &path, body::full(to_json(body)?), Some("application/json")).await?;
        Ok(EventStream::new(response))
    }

    /// `POST /v1/leases/{id}/processes`: starts a background process (it outlives this client).
    ///
    /// ```no_run
    /// # async fn demo(client: &firepit_client::Client) -> Result<(), firepit_client::ClientError> {
    /// use firepit_api::{OutputQuery, Program, SignalSpec, StartProcessBody};
    /// let program = Program::new(["sh", "-c", "while :; do date; sleep 1; done"]);
    /// let body = StartProcessBody { tag: Some("clock".into()), ..program.into() };
    /// let process = client.start_process("l-0123", &body).await?;
    /// let out = client.process_output("l-0123", "clock", &OutputQuery { wait_ms: 2000, ..Default::default() }).await?;
    /// println!("{} (next read from {})", out.data, out.next_offset);
    /// client.signal_process("l-0123", &process.id.to_string(), SignalSpec::Name("TERM".into())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_process(
        &self,
        lease_id: &str,
        body: &StartProcessBody,
    ) -> Result<ProcessView, ClientError> {
        self.call(Method::POST, &lease_path(lease_id, "processes", &())?, Some(body), &[]).await
    }

    /// `GET /v1/leases/{id}/processes`.
    pub async fn processes(&self, lease_id: &str) -> Result<Vec<ProcessView>, ClientError> {
        let list: ProcessList =
            self.call::<(), _>(Method::GET, &lease_path(lease_id, "processes", &())?, None, &[]).await?;
        Ok(list.processes)
    }

    /// `GET /v1/leases/{id}/processes/{process}` (`process`: id or tag), after waiting up to
    /// `wait_ms` for it to exit.
    pub async fn process(
        &self,
        lease_id: &str,
        process: &str,
        wait_ms: u64,
    ) -> Result<ProcessView, ClientError> {
        let path =
            lease_path(lease_id, &format!("processes/{}", segment(process)), &ProcessQuery { wait_ms })?;
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// `POST /v1/leases/{id}/processes/{process}/signal`: signals its whole process group.
    pub async fn signal_process(
        &self,
        lease_id: &str,
        process: &str,
        signal: SignalSpec,
    ) -> Result<(), ClientError> {
        let path = lease_path(lease_id, &format!("processes/{}/signal", segment(process)), &())?;
        self.call_empty(Method::POST, &path, Some(&SignalBody { signal })).await
    }

    /// `DELETE /v1/leases/{id}/processes/{process}`: forgets an exited process.
    pub async fn remove_process(&self, lease_id: &str, process: &str) -> Result<(), ClientError> {
        let path = lease_path(lease_id, &format!("processes/{}", segment(process)), &())?;
        self.call_empty::<()>(Method::DELETE, &path, None).await
    }

    /// `GET /v1/leases/{id}/processes/{process}/output`: a slice of output from an offset (`follow`
    /// is ignored here: see [`follow_output`](Self::follow_output)).
    pub async fn process_output(
        &self,
        lease_id: &str,
        process: &str,
        query: &OutputQuery,
    ) -> Result<ProcessOutputView, ClientError> {
        let query = OutputQuery { follow: false, ..query.clone() };
        let path = lease_path(lease_id, &format!("processes/{}/output", segment(process)), &query)?;
        self.call::<(), _>(Method::GET, &path, None, &[]).await
    }

    /// The output of `channel` from `offset` as events, until the channel ends (`eof`, then `exit`).
    pub async fn follow_output(
        &self,
        lease_id: &str,
        process: &str,
        channel: OutputChannel,
        offset: u64,
    ) -> Result<EventStream, ClientError> {
        let query = OutputQuery { channel, offset, follow: true, ..Default::default() };
        let path = lease_path(lease_id, &format!("processes/{}/output", segment(process)), &query)?;
        Ok(EventStream::new(self.send(Method::GET, &path, body::full(Vec::new()), None).await?))
    }
}
