//! One unary gRPC method served with small per-call buffers: the server the filter
//! services (authz `Check`, rate-limit `ShouldRateLimit`) use instead of the generated
//! one. It answers as the generated server does (same service name, path, 4 MiB
//! decoding limit, no compression, `Unimplemented` for any other path); only the
//! buffers each call starts with differ.
use std::future::Future;
use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::{Request, Response, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Bytes each call's request and response buffers start with. tonic's default, 8 KiB,
/// is a "large" request to glibc's malloc, and each one first merges every small free
/// chunk (`malloc_consolidate`): with two per call, malloc took a fifth of the
/// rate-limit service's CPU under load. A Check or a descriptor request and its
/// answer are a few hundred bytes; a larger one grows its buffer as before.
pub const CALL_BUFFER: usize = 512;

/// A unary gRPC method and its handler.
pub trait UnaryMethod: Clone + Send + Sync + 'static {
    /// The service's full name, e.g. `envoy.service.auth.v3.Authorization`.
    const SERVICE: &'static str;
    /// The method's name, e.g. `Check`; the path served is `/SERVICE/METHOD`.
    const METHOD: &'static str;
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;

    fn call(
        &self,
        request: Request<Self::Request>,
    ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send;
}

/// The tower service tonic's router serves for a [`UnaryMethod`].
#[derive(Clone)]
pub struct UnaryServer<M>(pub M);

impl<M: UnaryMethod> tonic::server::NamedService for UnaryServer<M> {
    const NAME: &'static str = M::SERVICE;
}

/// Whether `path` is `/SERVICE/METHOD` of `M`.
fn is_method<M: UnaryMethod>(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(M::SERVICE))
        .and_then(|p| p.strip_prefix('/'))
        == Some(M::METHOD)
}

impl<M, B> Service<http::Request<B>> for UnaryServer<M>
where
    M: UnaryMethod,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !is_method::<M>(req.uri().path()) {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = Call(self.0.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(SmallCodec::<M::Response, M::Request>::new());
            Ok(grpc.unary(method, req).await)
        })
    }
}

struct Call<M>(M);

impl<M: UnaryMethod> tonic::server::UnaryService<M::Request> for Call<M> {
    type Response = M::Response;
    type Future = BoxFuture<Response<M::Response>, Status>;

    fn call(&mut self, request: Request<M::Request>) -> Self::Future {
        let method = self.0.clone();
        Box::pin(async move { method.call(request).await })
    }
}

/// prost's codec with [`CALL_BUFFER`]-sized buffers: encodes `E`, decodes `D`.
pub struct SmallCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> SmallCodec<E, D> {
    pub fn new() -> Self {
        SmallCodec(PhantomData)
    }
}

impl<E, D> Default for SmallCodec<E, D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, D> Codec for SmallCodec<E, D>
where
    E: prost::Message + Send + 'static,
    D: prost::Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = ProstEncoder<E>;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<E, D>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<E, D>::raw_decoder(settings())
    }
}

fn settings() -> BufferSettings {
    // The yield threshold as tonic's default (32 KiB): only the buffer size changes.
    BufferSettings::new(CALL_BUFFER, 32 * 1024)
}

#[cfg(test)]
#[path = "unary_tests.rs"]
mod tests;
