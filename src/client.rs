//! A small synchronous client for memesd: connect, send a request line, read its reply.
//!
//! Synchronous on purpose: the CLI is a short-lived process called in shell loops, and a
//! blocking socket costs less per call than starting an async runtime.

use crate::protocol::ndjson::{Envelope, ReplyLine};
use crate::protocol::{ErrorBody, Request};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Why a call did not produce a reply. Like every error type in the crate, a message never
/// repeats its cause: the cause is `source()`, and whoever prints an error prints its chain
/// (anyhow's `{:#}`, or `cli::output::with_causes`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to memesd at {path}")]
    Unreachable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lost the connection to memesd")]
    Io(#[from] io::Error),
    #[error("memesd sent an unexpected reply: {0}")]
    Protocol(String),
}

/// One connection to memesd.
pub struct Client {
    stream: BufReader<Stream>,
    next_id: u64,
    line: String,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            path: path.into(),
            source,
        };
        let name = path.to_fs_name::<GenericFilePath>().map_err(unreachable)?;
        let stream = Stream::connect(name).map_err(unreachable)?;
        Ok(Client {
            stream: BufReader::new(stream),
            next_id: 1,
            line: String::new(),
        })
    }

    /// Sends `request` and returns the reply's `data` (raw JSON) or its error.
    pub fn call(
        &mut self,
        request: &Request,
    ) -> Result<Result<Box<RawValue>, ErrorBody>, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_vec(&Envelope {
            id: Some(id),
            request,
        })
        .expect("requests serialise");
        line.push(b'\n');
        self.stream.get_mut().write_all(&line)?;
        self.line.clear();
        if self.stream.read_line(&mut self.line)? == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "memesd closed the connection without replying",
            )));
        }
        let reply: ReplyLine = serde_json::from_str(&self.line)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", self.line.trim_end())))?;
        if reply.id != Some(serde_json::Value::from(id)) {
            return Err(ClientError::Protocol(format!(
                "reply for request {:?} arrived for request {id}",
                reply.id
            )));
        }
        match (reply.ok, reply.data, reply.error) {
            (true, Some(data), _) => Ok(Ok(data)),
            (false, _, Some(error)) => Ok(Err(error)),
            _ => Err(ClientError::Protocol(self.line.trim_end().to_string())),
        }
    }

    /// [`Client::call`], decoding `data` as `T`.
    pub fn call_as<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<Result<T, ErrorBody>, ClientError> {
        Ok(match self.call(request)? {
            Ok(data) => Ok(serde_json::from_str(data.get())
                .map_err(|e| ClientError::Protocol(format!("{e}: {}", data.get())))?),
            Err(error) => Err(error),
        })
    }
}
