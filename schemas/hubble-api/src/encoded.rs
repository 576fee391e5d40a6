//! `GetFlows` with its responses as bytes, on both ends.
//!
//! - Client ([`get_flows`]): each item of the stream is the bytes of one `GetFlowsResponse`,
//!   as received. The request is encoded as the generated client does.
//! - Server ([`ObserverService`]): the Observer service whose `GetFlows` streams responses
//!   its implementation encoded itself ([`EncodedFlows`]); the other methods are the generated
//!   server's. `flowsql serve` writes flows from its columns straight to the wire: building
//!   a message tree for each would cost more than everything else it does per flow.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::{http, Body, BoxFuture, BoxStream, Service, StdError};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::observer::observer_server::{Observer, ObserverServer, SERVICE_NAME};
use crate::observer::GetFlowsRequest;

/// The method's path, as the generated client calls it.
const GET_FLOWS: &str = "/observer.Observer/GetFlows";

/// Calls `GetFlows`; every stream item is one `GetFlowsResponse`, still encoded.
/// `max_message_size` bounds one response, as `max_decoding_message_size` does for the
/// generated client.
pub async fn get_flows(
    channel: Channel,
    request: GetFlowsRequest,
    max_message_size: usize,
) -> Result<Streaming<Bytes>, Status> {
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(max_message_size);
    client
        .ready()
        .await
        .map_err(|error| Status::unavailable(format!("service was not ready: {error}")))?;
    let response = client
        .server_streaming(
            Request::new(request),
            tonic::codegen::http::uri::PathAndQuery::from_static(GET_FLOWS),
            EncodedResponses,
        )
        .await?;
    Ok(response.into_inner())
}

/// Encodes requests with prost, hands responses over as bytes.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedResponses;

impl Codec for EncodedResponses {
    type Encode = GetFlowsRequest;
    type Decode = Bytes;
    type Encoder = EncodedResponses;
    type Decoder = EncodedResponses;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for EncodedResponses {
    type Item = GetFlowsRequest;
    type Error = Status;

    fn encode(&mut self, item: GetFlowsRequest, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|error| Status::internal(format!("encoding GetFlowsRequest: {error}")))
    }
}

impl Decoder for EncodedResponses {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The `node_status` of an encoded response, if that is what it holds (rare: decoded whole,
/// for a log line).
pub fn node_status(response: &[u8]) -> Option<crate::relay::NodeStatusEvent> {
    use crate::observer::get_flows_response::ResponseTypes;
    match crate::observer::GetFlowsResponse::decode(response)
        .ok()?
        .response_types
    {
        Some(ResponseTypes::NodeStatus(status)) => Some(status),
        _ => None,
    }
}

/// `GetFlows` answered with responses already encoded: each stream item is the bytes of one
/// `GetFlowsResponse`, sent as they are.
#[tonic::async_trait]
pub trait EncodedFlows: Send + Sync + 'static {
    async fn get_flows(
        &self,
        request: Request<GetFlowsRequest>,
    ) -> Result<Response<BoxStream<Bytes>>, Status>;
}

/// The Observer service: `GetFlows` from [`EncodedFlows`], every other method from the
/// generated server over the same implementation.
pub struct ObserverService<T> {
    generated: ObserverServer<T>,
    inner: Arc<T>,
    max_encoding_message_size: Option<usize>,
}

impl<T: Observer + EncodedFlows> ObserverService<T> {
    pub fn new(inner: T) -> Self {
        let inner = Arc::new(inner);
        ObserverService {
            generated: ObserverServer::from_arc(Arc::clone(&inner)),
            inner,
            max_encoding_message_size: None,
        }
    }

    /// Limits the size of one encoded message, on every method.
    #[must_use]
    pub fn max_encoding_message_size(mut self, limit: usize) -> Self {
        self.generated = self.generated.max_encoding_message_size(limit);
        self.max_encoding_message_size = Some(limit);
        self
    }
}

impl<T> Clone for ObserverService<T> {
    fn clone(&self) -> Self {
        ObserverService {
            generated: self.generated.clone(),
            inner: Arc::clone(&self.inner),
            max_encoding_message_size: self.max_encoding_message_size,
        }
    }
}

impl<T> tonic::server::NamedService for ObserverService<T> {
    const NAME: &'static str = SERVICE_NAME;
}

impl<T, B> Service<http::Request<B>> for ObserverService<T>
where
    T: Observer + EncodedFlows,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != GET_FLOWS {
            return self.generated.call(request);
        }
        let method = GetFlowsMethod(Arc::clone(&self.inner));
        let limit = self.max_encoding_message_size;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ServerSide).apply_max_message_size_config(None, limit);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

/// The `GetFlows` method of an [`EncodedFlows`].
struct GetFlowsMethod<T>(Arc<T>);

impl<T: EncodedFlows> tonic::server::ServerStreamingService<GetFlowsRequest> for GetFlowsMethod<T> {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = BoxFuture<Response<BoxStream<Bytes>>, Status>;

    fn call(&mut self, request: Request<GetFlowsRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.get_flows(request).await })
    }
}

/// The server's side of [`EncodedResponses`]: requests decoded with prost, responses sent as
/// the bytes they already are.
#[derive(Debug, Clone, Copy, Default)]
struct ServerSide;

impl Codec for ServerSide {
    type Encode = Bytes;
    type Decode = GetFlowsRequest;
    type Encoder = ServerSide;
    type Decoder = ServerSide;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for ServerSide {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ServerSide {
    type Item = GetFlowsRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<GetFlowsRequest>, Status> {
        // A request that does not parse is INTERNAL, as gRPC's status code table says and the
        // generated servers answer.
        GetFlowsRequest::decode(src)
            .map(Some)
            .map_err(|error| Status::internal(format!("GetFlowsRequest: {error}")))
    }
}
