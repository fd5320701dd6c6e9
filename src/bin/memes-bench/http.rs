//! `--http URL`: the same loads over HTTP/1.1, for memesd's HTTP front or any server that
//! answers `GET /memes` for a bearer (the yardstick's limitd-http, in the same run).
//!
//! Every request is a charged `GET /memes?query=…` with `Authorization: Bearer <bearer>`,
//! the bearers rotating over the bench users (`--user-prefix`, `--users`) or over the lines
//! of `--bearers FILE` (signed tokens, say). Requests are written raw on keep-alive
//! connections, and pipelined when the server falls behind, so that an open loop never
//! waits for the server to send on schedule; responses are read by their `Content-Length`.
//! Anything but a `200` counts as an error, named by its status and problem `code`.

use super::open_loop::{self, Requests};
use super::{BenchArgs, BenchOp, Quota, Report, Tally};
use memes::cli::Failure;
use memes::cli::exit::Exit;
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;

/// Where to send, and what.
struct Target {
    address: SocketAddr,
    /// One request per bearer, ready to write.
    requests: Vec<Vec<u8>>,
}

impl Target {
    /// The request for the `n`th request on connection `conn` of `conns` (the bearers
    /// rotate as the socket bench's users do).
    fn request(&self, conn: usize, n: u64, conns: usize) -> &[u8] {
        &self.requests[(conn + n as usize * conns) % self.requests.len()]
    }
}

impl Requests for Target {
    fn write(&self, conn: usize, n: u64, conns: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(self.request(conn, n, conns));
    }
}

/// Runs the bench over HTTP at `url`.
pub fn run(args: &BenchArgs, url: &str) -> Result<Exit, Failure> {
    let invalid = |message: String| Failure::new(Exit::Invalid, message);
    if args.prepare || args.template.is_some() || args.op != BenchOp::Get {
        return Err(invalid(
            "--http measures charged GET /memes only: give bench users their balance over the socket \
             first (memes bench --prepare), and no --template or --op"
                .into(),
        ));
    }
    let (address, host, prefix) = parse_url(url).map_err(invalid)?;
    let bearers = match &args.bearers {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("reading {}: {e}", path.display())))?
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect(),
        None => (0..args.users)
            .map(|i| format!("{}{i}", args.user_prefix))
            .collect::<Vec<_>>(),
    };
    if bearers.is_empty() {
        return Err(invalid("no bearers to send".into()));
    }
    let query = memes::cli::remote::encode(&args.query);
    let target = Arc::new(Target {
        address,
        requests: bearers
            .iter()
            .map(|bearer| {
                format!(
                    "GET {prefix}/memes?query={query} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {bearer}\r\n\r\n"
                )
                .into_bytes()
            })
            .collect(),
    });
    let runtime = super::runtime(args)?;
    let report = runtime
        .block_on(measure(target, args))
        .map_err(|e| Failure::new(Exit::Failure, format!("bench: {e}")))?;
    Ok(super::conclude(&report, args))
}

/// `http://host:port[/prefix]`: the address, the Host header, the path prefix.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--http {url:?}: only http:// URLs (TLS belongs to a proxy)"))?;
    let (host, prefix) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let address = with_port
        .to_socket_addrs()
        .map_err(|e| format!("--http {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--http {url:?}: no address"))?;
    Ok((address, host.to_string(), prefix.to_string()))
}

async fn measure(target: Arc<Target>, args: &BenchArgs) -> Result<Report, String> {
    let op = "http get";
    if let Some(rate) = args.rate {
        let total = open_loop::total(args, rate);
        return open_loop(target, args.conns, rate, total, op).await;
    }
    let mut streams = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        streams.push(connect(target.address).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (conn, stream) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(closed_loop(
            stream,
            target.clone(),
            conn,
            args.conns,
            args.depth,
            Quota::of(args, started, conn),
        )));
    }
    super::collect(tasks, op, args.depth, None, started).await
}

async fn connect(address: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Keeps `depth` requests in flight on one connection until the quota is used up.
async fn closed_loop(
    stream: TcpStream,
    target: Arc<Target>,
    conn: usize,
    conns: usize,
    depth: usize,
    quota: Quota,
) -> Result<(Tally, u64), String> {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let mut tally = Tally::new();
    let mut response = Response::default();
    let mut in_flight = VecDeque::with_capacity(depth);
    let mut sent = 0u64;
    loop {
        while in_flight.len() < depth && quota.allows(sent) {
            writer
                .write_all(target.request(conn, sent, conns))
                .await
                .map_err(|e| e.to_string())?;
            in_flight.push_back(Instant::now());
            sent += 1;
        }
        writer.flush().await.map_err(|e| e.to_string())?;
        let Some(started) = in_flight.pop_front() else {
            return Ok((tally, sent));
        };
        response.read(&mut reader).await?;
        response.record(&mut tally, started)?;
    }
}

/// The open loop over HTTP ([`super::open_loop`]).
async fn open_loop(
    target: Arc<Target>,
    conns: usize,
    rate: f64,
    total: u64,
    op: &str,
) -> Result<Report, String> {
    let address = target.address;
    open_loop::run(conns, rate, total, op, target, |scheduled, expected| {
        let stream = std::net::TcpStream::connect(address)
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let reader = TcpStream::from_std(stream).map_err(|e| e.to_string())?;
        Ok((
            writer,
            tokio::spawn(read_scheduled(reader, scheduled, expected)),
        ))
    })
    .await
}

/// Reads `expected` responses, measuring each from the time it was scheduled.
async fn read_scheduled(
    stream: TcpStream,
    scheduled: open_loop::Schedule,
    expected: u64,
) -> Result<(Tally, u64), String> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut tally = Tally::new();
    let mut response = Response::default();
    let mut tick = open_loop::ticker();
    for read in 0..expected {
        let Some(next) =
            open_loop::next_reply(response.read(&mut reader), &scheduled, &mut tick).await
        else {
            return Ok((tally, read));
        };
        next?;
        let started = scheduled
            .lock()
            .expect("not poisoned")
            .pop_front()
            .ok_or("a response to a request never sent")?;
        response.record(&mut tally, started)?;
    }
    Ok((tally, expected))
}

/// One response, read into buffers reused from one to the next.
#[derive(Default)]
struct Response {
    status: u16,
    line: Vec<u8>,
    body: Vec<u8>,
}

impl Response {
    /// Reads the next response on the connection: status line, headers, and the body its
    /// `Content-Length` announces.
    async fn read(&mut self, reader: &mut (impl AsyncBufReadExt + Unpin)) -> Result<(), String> {
        let mut line = std::mem::take(&mut self.line);
        let status = self.read_head(reader, &mut line).await;
        self.line = line;
        let length = status?;
        self.body.resize(length, 0);
        reader
            .read_exact(&mut self.body)
            .await
            .map_err(|e| format!("reading a response body: {e}"))?;
        Ok(())
    }

    /// The status line and headers; the body's length.
    async fn read_head(
        &mut self,
        reader: &mut (impl AsyncBufReadExt + Unpin),
        line: &mut Vec<u8>,
    ) -> Result<usize, String> {
        let mut next_line = async |line: &mut Vec<u8>| {
            line.clear();
            match reader.read_until(b'\n', line).await {
                Ok(0) => Err("the server closed the connection".to_string()),
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        };
        next_line(line).await?;
        self.status = std::str::from_utf8(line)
            .ok()
            .and_then(|text| text.strip_prefix("HTTP/1.1 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP/1.1 status line: {:?}",
                    String::from_utf8_lossy(line)
                )
            })?;
        let mut length = None;
        loop {
            next_line(line).await?;
            if line.as_slice() == b"\r\n" {
                break;
            }
            let text = String::from_utf8_lossy(line);
            let Some((name, value)) = text.split_once(':') else {
                return Err(format!("not a header: {text:?}"));
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err("chunked responses are not read by this bench".into());
            }
        }
        Ok(length.unwrap_or(0))
    }

    /// Records the response: its latency from `started`, and, unless it is a `200`, an
    /// error named by its status and problem code.
    fn record(&self, tally: &mut Tally, started: Instant) -> Result<(), String> {
        let nanos = started.elapsed().as_nanos().clamp(1, 600_000_000_000) as u64;
        tally.latencies.record(nanos).map_err(|e| e.to_string())?;
        if self.status != 200 {
            let code = serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|problem| problem["code"].as_str().map(str::to_string));
            let name = match code {
                Some(code) => format!("{} {code}", self.status),
                None => self.status.to_string(),
            };
            *tally.errors.entry(name).or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries() {
        let (address, host, prefix) = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (address.port(), host.as_str(), prefix.as_str()),
            (8080, "127.0.0.1:8080", "")
        );
        let (_, _, prefix) = parse_url("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(prefix, "/api");
        assert!(parse_url("https://example.com").is_err());
    }
}
