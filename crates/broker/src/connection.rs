//! One client connection: read a frame, dispatch it, write the response, in request order.
//!
//! Requests on a connection are handled one at a time, as Kafka does, which keeps responses
//! in order for clients that pipeline. A malformed frame closes this connection only.

use std::sync::Arc;

use bytes::BytesMut;
use sapper_wire::frame::FrameReader;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::dispatch::dispatch;

/// Serves `stream` until the peer closes it, sends garbage, or the broker shuts down.
pub async fn serve_connection(broker: Arc<Broker>, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(?peer, error = %e, "set_nodelay failed");
    }
    let (read, mut write) = stream.into_split();
    let mut reader = FrameReader::new(read, broker.config.socket_request_max_bytes);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            () = broker.shutdown.cancelled() => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "closing connection: bad frame");
                break;
            }
        };
        if let Err(e) = dispatch(&broker, peer, frame, &mut out).await {
            tracing::debug!(?peer, error = %e, "closing connection: request not answerable");
            break;
        }
        if !out.is_empty() {
            if let Err(e) = write.write_all(&out).await {
                tracing::debug!(?peer, error = %e, "write failed");
                break;
            }
            out.clear();
            if out.capacity() > 16 * 1024 * 1024 {
                out = BytesMut::with_capacity(64 * 1024);
            }
        }
    }
}
