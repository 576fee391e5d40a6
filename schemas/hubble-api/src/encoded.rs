//! A `GetFlows` call whose responses stay as received: each item of the stream is the bytes of
//! one `GetFlowsResponse`. The request is encoded as the generated client does; only the
//! decoding side differs.

use bytes::{Buf, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::transport::Channel;
use tonic::{Request, Status};

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
