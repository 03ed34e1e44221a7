//! The CLI's side of the daemon's API ([`apotheca_protocol::client`]): a JSON answer back,
//! and the daemon's refusals turned into control errors (404 and 400: bad input, exit 2).

use std::path::Path;

use apotheca_protocol::client::Client as Api;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ControlError, Result};

pub struct Client {
    api: Api,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Self {
            api: Api::new(socket),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path).await
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::POST, path).await
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let answer = self.api.call(method, path, None, None).await?;
        if answer.status.is_success() {
            return Ok(answer.read()?);
        }
        Err(match answer.status {
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => {
                ControlError::Invalid(answer.message())
            }
            _ => ControlError::Daemon(answer.message()),
        })
    }
}
