//! Ports of the guest other than envd's, reached through the same listener
//! (`Host: {port}-{sandboxID}.{domain}`, E2B's `get_host(port)`): the request goes over a firepit
//! port forward (opened on first use, closed with the lease) to that port of the guest, and the
//! answer comes back as it is. The sandbox's template needs a network (`network = "nat"`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::sandboxes::Sandbox;
use crate::state::AppState;

fn port_not_open(sandbox: &str, port: u16, why: &str) -> Response {
    let body = serde_json::json!({
        "code": 502,
        "message": format!("The sandbox {sandbox} is running but port is not open: {port} ({why})"),
        "sandboxId": sandbox,
        "port": port,
    });
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// Forwards `request` to `port` of the sandbox's guest.
pub async fn forward(state: &AppState, sandbox: &Sandbox, port: u16, request: Request) -> Response {
    let address = match state.client.forward_port(&sandbox.id, port).await {
        Ok(address) => address,
        Err(error) => return port_not_open(&sandbox.id, port, &error.to_string()),
    };
    let stream = match tokio::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(error) => return port_not_open(&sandbox.id, port, &error.to_string()),
    };
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(parts) => parts,
        Err(error) => return port_not_open(&sandbox.id, port, &error.to_string()),
    };
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "proxied connection ended with an error");
        }
    });
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => port_not_open(&sandbox.id, port, &error.to_string()),
    }
}
