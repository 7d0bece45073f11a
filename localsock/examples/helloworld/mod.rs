//! The canonical gRPC `helloworld.Greeter` service, written out by hand so the examples need
//! neither `protoc` nor a build script:
//!
//! ```proto
//! syntax = "proto3";
//! package helloworld;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply) {} }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! A real project generates this module from the `.proto` with `tonic-prost-build` (prost
//! message structs, a `GreeterServer`/`GreeterClient` pair): the localsock lines of the
//! examples stay exactly the same. The wire format here is the canonical one (any gRPC
//! client, e.g. Python's grpcio, can call the server): `/helloworld.Greeter/SayHello`, each
//! message a protobuf with field 1 a length-delimited UTF-8 string.
#![allow(dead_code, unreachable_pub)] // each example and test uses a part

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Response, Status};

/// `helloworld.HelloRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloRequest {
    pub name: String,
}

/// `helloworld.HelloReply`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelloReply {
    pub message: String,
}

/// A protobuf message whose only field is `string <field 1>`.
pub trait OneString: Default + Send + 'static {
    fn get(&self) -> &str;
    fn set(&mut self, value: String);
}

impl OneString for HelloRequest {
    fn get(&self) -> &str {
        &self.name
    }
    fn set(&mut self, value: String) {
        self.name = value;
    }
}

impl OneString for HelloReply {
    fn get(&self) -> &str {
        &self.message
    }
    fn set(&mut self, value: String) {
        self.message = value;
    }
}

fn put_varint(buf: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_varint(buf: &mut impl Buf) -> Result<u64, Status> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            break;
        }
        let b = buf.get_u8();
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(Status::internal("bad protobuf varint"))
}

fn skip(buf: &mut impl Buf, n: u64) -> Result<(), Status> {
    let n = usize::try_from(n).map_err(|_| Status::internal("bad protobuf length"))?;
    if buf.remaining() < n {
        return Err(Status::internal("truncated protobuf message"));
    }
    buf.advance(n);
    Ok(())
}

/// Encodes and decodes [`OneString`] messages: `E` out, `D` in.
pub struct OneStringCodec<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for OneStringCodec<E, D> {
    fn default() -> Self {
        OneStringCodec(PhantomData)
    }
}

pub struct OneStringEncoder<E>(PhantomData<fn(E)>);
pub struct OneStringDecoder<D>(PhantomData<fn() -> D>);

impl<E: OneString> Encoder for OneStringEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let s = item.get();
        if !s.is_empty() {
            buf.put_u8(0x0a); // field 1, wire type 2 (length-delimited)
            put_varint(buf, s.len() as u64);
            buf.put_slice(s.as_bytes());
        }
        Ok(())
    }
}

impl<D: OneString> Decoder for OneStringDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let mut msg = D::default();
        while buf.has_remaining() {
            let key = get_varint(buf)?;
            match (key >> 3, key & 7) {
                (1, 2) => {
                    let len = get_varint(buf)?;
                    let len = usize::try_from(len)
                        .ok()
                        .filter(|l| *l <= buf.remaining())
                        .ok_or_else(|| Status::internal("truncated protobuf message"))?;
                    let bytes = buf.copy_to_bytes(len);
                    let s = String::from_utf8(bytes.to_vec())
                        .map_err(|_| Status::internal("string field is not UTF-8"))?;
                    msg.set(s);
                }
                // Unknown fields are skipped, as protobuf requires.
                (_, 0) => {
                    get_varint(buf)?;
                }
                (_, 1) => skip(buf, 8)?,
                (_, 2) => {
                    let len = get_varint(buf)?;
                    skip(buf, len)?;
                }
                (_, 5) => skip(buf, 4)?,
                _ => return Err(Status::internal("bad protobuf wire type")),
            }
        }
        Ok(Some(msg))
    }
}

impl<E: OneString, D: OneString> Codec for OneStringCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = OneStringEncoder<E>;
    type Decoder = OneStringDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        OneStringEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        OneStringDecoder(PhantomData)
    }
}

pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// The server side of `helloworld.Greeter` (what tonic-build generates as a trait).
pub trait Greeter: Send + Sync + 'static {
    fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> impl Future<Output = Result<Response<HelloReply>, Status>> + Send;
}

/// A [`Greeter`] as a tonic service (what tonic-build generates as `GreeterServer`).
pub struct GreeterServer<T> {
    inner: Arc<T>,
}

impl<T> GreeterServer<T> {
    pub fn new(greeter: T) -> Self {
        GreeterServer {
            inner: Arc::new(greeter),
        }
    }
}

impl<T> Clone for GreeterServer<T> {
    fn clone(&self) -> Self {
        GreeterServer {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> tonic::server::NamedService for GreeterServer<T> {
    const NAME: &'static str = "helloworld.Greeter";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

struct SayHelloSvc<T>(Arc<T>);

impl<T: Greeter> tonic::server::UnaryService<HelloRequest> for SayHelloSvc<T> {
    type Response = HelloReply;
    type Future = BoxFuture<Response<HelloReply>, Status>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let inner = Arc::clone(&self.0);
        Box::pin(async move { inner.say_hello(request).await })
    }
}

impl<T: Greeter> tower_service::Service<http::Request<tonic::body::Body>> for GreeterServer<T> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != SAY_HELLO {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(OneStringCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(SayHelloSvc(inner), request).await)
        })
    }
}

/// The client side (what tonic-build generates as `GreeterClient`), on any channel.
#[derive(Clone)]
pub struct GreeterClient {
    inner: tonic::client::Grpc<tonic::transport::Channel>,
}

impl GreeterClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        GreeterClient {
            inner: tonic::client::Grpc::new(channel),
        }
    }

    pub async fn say_hello(
        &mut self,
        request: impl tonic::IntoRequest<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("service was not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(SAY_HELLO);
        let codec = OneStringCodec::<HelloRequest, HelloReply>::default();
        self.inner.unary(request.into_request(), path, codec).await
    }
}
