//! The gRPC codec of every service (build.rs names it): tonic-prost's, except that a message's
//! buffer is reserved at its encoded length before it is encoded. prost writes a message field
//! by field and tonic's buffer grows by doubling as it goes, so a LIST answer of 20 MiB passed
//! through a 16 and a 32 MiB buffer, both alive while the second was filled.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::ProstCodec;

pub struct ReservingCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for ReservingCodec<T, U> {
    fn default() -> Self {
        ReservingCodec { prost: ProstCodec::default() }
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
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.prost.decoder()
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
}
