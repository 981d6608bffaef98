//! The gRPC codec of every service (build.rs names it): tonic-prost's, except that a message's
//! buffer is reserved at its encoded length before it is encoded. prost writes a message field
//! by field and tonic's buffer grows by doubling as it goes, so a LIST answer of 20 MiB passed
//! through a 16 and a 32 MiB buffer, both alive while the second was filled.
//! Every request and answer also starts from a buffer of `CODEC_BUFFER_BYTES` rather than
//! tonic's 8 KiB (most are a few hundred bytes; a larger one grows it): 1000 clients' puts in
//! flight had 8 KiB each for a 300-byte message.
//! Decoding is tonic-prost's, but a message nested past prost's limit (only a TxnRequest can
//! nest) is refused as etcd refuses a txn too deep: "too many operations in txn request".

use std::marker::PhantomData;

use bytes::BufMut;
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

use crate::proto::etcdserverpb::{WatchRequest, WatchResponse};
use crate::watch::wire::WireResponse;

/// The initial size of a message's encode or decode buffer.
const CODEC_BUFFER_BYTES: usize = 1024;
/// tonic's default: a stream of answers is sent once this much is encoded.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

fn buffer_settings() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

pub struct ReservingCodec<T, U>(PhantomData<fn() -> (T, U)>);

impl<T, U> Default for ReservingCodec<T, U> {
    fn default() -> Self {
        ReservingCodec(PhantomData)
    }
}

impl<T, U> Codec for ReservingCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = DepthDecoder<<ProstCodec<T, U> as Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        DepthDecoder(ProstCodec::<T, U>::raw_decoder(buffer_settings()))
    }
}

pub struct ReservingEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

/// The Watch service's codec: its answers may come already encoded (`WireResponse::Encoded`,
/// built by the watch hub from events encoded once for every watcher) and are copied into the
/// stream as they are. A stream's buffer starts at `CODEC_BUFFER_BYTES` (an idle stream holds
/// no more) and, when an answer does not fit, grows to a whole yield's worth at once rather
/// than doubling through copies of what it already holds.
#[derive(Default)]
pub struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = WireResponse;
    type Decode = WatchRequest;
    type Encoder = WatchEncoder;
    type Decoder = <ProstCodec<WatchResponse, WatchRequest> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        WatchEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<WatchResponse, WatchRequest>::raw_decoder(buffer_settings())
    }
}

pub struct WatchEncoder;

impl Encoder for WatchEncoder {
    type Item = WireResponse;
    type Error = Status;

    fn encode(&mut self, item: WireResponse, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let len = item.encoded_len();
        if buf.chunk_mut().len() < len {
            buf.reserve(len.max(YIELD_THRESHOLD_BYTES));
        }
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

/// tonic-prost's decoder, with prost's "recursion limit reached" answered as etcd answers a txn
/// nested too deep (see the module comment).
pub struct DepthDecoder<D>(D);

impl<D: Decoder<Error = Status>> Decoder for DepthDecoder<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D::Item>, Status> {
        self.0.decode(buf).map_err(|s| if s.message().contains("recursion limit reached") { crate::error::Error::TooManyOps.into() } else { s })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
