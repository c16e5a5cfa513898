//! A QMP session with one QEMU: commands with arguments, and waiting for an event.
//!
//! Every session checks who answers: with `peer`, the socket's other end must be that
//! process (a confined guest's uid owns its directory and could replace its socket with a
//! link to another guest's).

use crate::DriverError;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

fn failed(what: impl std::fmt::Display) -> DriverError {
    DriverError::Failed(what.to_string())
}

/// One connection to a QEMU's monitor, past the capabilities negotiation.
pub struct Qmp {
    lines: Lines<BufReader<OwnedReadHalf>>,
    w: OwnedWriteHalf,
    /// Events read while waiting for an answer, kept for [`Qmp::wait_event`].
    events: Vec<Value>,
}

impl Qmp {
    pub async fn connect(sock: &Path, peer: Option<i32>) -> Result<Qmp, DriverError> {
        let stream = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|e| failed(format!("cannot reach QMP at {}: {e}", sock.display())))?;
        if let Some(pid) = peer {
            let got = stream.peer_cred().map_err(failed)?.pid();
            if got != Some(pid) {
                return Err(failed(format!(
                    "QMP at {} is answered by pid {got:?}, not its QEMU {pid}",
                    sock.display()
                )));
            }
        }
        let (r, w) = stream.into_split();
        let mut qmp = Qmp { lines: BufReader::new(r).lines(), w, events: Vec::new() };
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Sends `command` (with `arguments`, an object) and returns its `return` value.
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, DriverError> {
        let msg = match arguments {
            Some(a) => json!({ "execute": command, "arguments": a }),
            None => json!({ "execute": command }),
        };
        let mut line = msg.to_string();
        line.push('\n');
        self.w.write_all(line.as_bytes()).await.map_err(failed)?;
        loop {
            let v = self.next().await?;
            if let Some(ret) = v.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = v.get("error") {
                let desc = err.get("desc").and_then(Value::as_str).unwrap_or("");
                return Err(failed(format!("QMP {command} failed: {desc}")));
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
            // The greeting (`QMP`) is skipped.
        }
    }

    /// Waits up to `limit` for an event named `name` whose `data` satisfies `matches`.
    pub async fn wait_event(
        &mut self,
        name: &str,
        limit: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, DriverError> {
        let is_it = |v: &Value| v.get("event").and_then(Value::as_str) == Some(name) && matches(&v["data"]);
        if let Some(i) = self.events.iter().position(is_it) {
            return Ok(self.events.remove(i));
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| failed(format!("QEMU sent no {name} within {limit:?}")))??;
            if is_it(&v) {
                return Ok(v);
            }
        }
    }

    async fn next(&mut self) -> Result<Value, DriverError> {
        match self.lines.next_line().await.map_err(failed)? {
            Some(line) => serde_json::from_str(&line).map_err(failed),
            None => Err(failed("QMP closed the connection")),
        }
    }
}
