//! gRPC's health service (grpc.health.v1.Health) on the client port, as etcd 3.5 registers it:
//! the server as a whole (service "") is SERVING from the start; any other name is unknown
//! (Check: NotFound "unknown service", grpc-go's words; Watch: SERVICE_UNKNOWN). Kubernetes'
//! `grpc:` probes and load balancers ask it. Watch sends the status, then holds the stream
//! open (the status never changes here) until the client ends it.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::{Health, HealthServer};
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};

pub struct HealthService;

pub fn server() -> HealthServer<HealthService> {
    HealthServer::new(HealthService)
}

/// The status of `service`: None when it is not the server's ("").
fn status_of(service: &str) -> Option<ServingStatus> {
    service.is_empty().then_some(ServingStatus::Serving)
}

type Statuses = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, r: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        let status = status_of(&r.get_ref().service).ok_or_else(|| Status::not_found("unknown service"))?;
        Ok(Response::new(HealthCheckResponse { status: status as i32 }))
    }

    type WatchStream = Statuses;

    async fn watch(&self, r: Request<HealthCheckRequest>) -> Result<Response<Statuses>, Status> {
        let status = status_of(&r.get_ref().service).unwrap_or(ServingStatus::ServiceUnknown);
        let first = futures_util::stream::iter([Ok::<_, Status>(HealthCheckResponse { status: status as i32 })]);
        Ok(Response::new(Box::pin(first.chain(futures_util::stream::pending()))))
    }
}
